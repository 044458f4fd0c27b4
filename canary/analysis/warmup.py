"""The warm-up allowance: the canary's first seconds judged against a decaying latency envelope."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from canary.analysis.ledger import Ledger
from canary.analysis.settings import EngineSettings
from canary.analysis.tests import ALL, wander_prior

# One bucket's log e-value with canary's and stable's [runs, sum, sum of squares]; None: too few.
_Cell = tuple[float, list[float], list[float]] | None
# Successful runs per version in a bucket before its difference counts (normal approximation).
MIN_BUCKET_RUNS = 5


def allowance(amplitude: float, tau_s: float, t: float, hold_s: float = 0.0) -> float:
    """The log ratio a warming canary may be slower than stable by at ``t`` s after t0, on top
    of the tolerance: log(1 + A exp(-(t - hold) / tau)), up to 1 + A times as slow for the
    first ``hold_s`` seconds, then decaying."""
    if tau_s <= 0 or amplitude <= 0:
        return 0.0
    return math.log1p(amplitude * math.exp(-max(t - hold_s, 0.0) / tau_s))


@dataclass(frozen=True)
class WarmupOutcome:
    """The warm-up test of one transaction (or ALL): its Shiryaev-Roberts statistic and the
    stretch of buckets that raised it, for the reason."""

    transaction: str
    log_e: float  # log R, the detector's statistic
    threshold: float  # log(buckets / alpha share): reject at or above
    first: int  # buckets first..last carry the evidence
    last: int
    canary_ms: float  # typical latency of successful runs over those buckets
    stable_ms: float
    allowed: float  # the log ratio allowed, on average over those buckets (envelope + tolerance)


def _alphas(ledger: Ledger) -> tuple[float, float]:
    """The warm-up test's alpha per transaction and pooled (same split as the main tests)."""
    s = ledger.settings
    share = s.alpha * s.warmup_alpha_share
    n = len(ledger.transactions)
    if n < 2:
        return share, 0.0
    pooled = share * s.pooled_alpha_share
    return (share - pooled) / n, pooled


def buckets_planned(ledger: Ledger) -> int:
    s = ledger.settings
    return max(1, math.ceil(s.warmup_s / s.warmup_bucket_s))


def warmup_tests(ledger: Ledger, rel: float) -> list[WarmupOutcome]:
    """Every warm-up test on the buckets closed by ``rel`` (s after t0).

    Per bucket (``warmup_bucket_s``), the canary-minus-stable difference of mean log latency of
    successful runs is tested against the null "no slower than the tolerance plus the warm-up
    envelope over the bucket": a Gaussian likelihood ratio against an effect ``tau_latency``
    beyond it, one e-value per bucket. The buckets' e-values are combined by a Shiryaev-Roberts e-detector,
    R_b = (R_{b-1} + 1) e_b: a bucket within the envelope costs little (R starts again from
    about 1), evidence beyond it counts at once. R is bounded by the sum of the e-processes
    started at each of the T planned buckets, so P(R ever >= T / alpha) <= alpha under the null.
    """
    s = ledger.settings
    if s.warmup_alpha_share <= 0 or s.warmup_s <= 0:
        return []
    bs = s.warmup_bucket_s
    planned = buckets_planned(ledger)
    closed = min(planned, math.floor(rel / bs))
    if closed <= 0:
        return []
    margin = math.log1p(ledger.slo.max_latency_increase_pct / 100.0)
    wander = wander_prior(ledger)
    floor = s.latency_floor_sd**2
    txns = ledger.transactions
    # Per transaction and bucket: (difference, its sampling variance, canary sums, stable sums).
    cells: dict[str, list[tuple[float, float, list[float], list[float]] | None]] = {}
    for txn in txns:
        ref = ledger.reference.get(txn)
        # Stable's usual spread: a floor under the variance of a bucket of a few runs, whose own
        # sample variance is often too small.
        ref_var = ((math.log(ref["p95"]) - ref["logmean"]) / 1.6449) ** 2 if ref else 0.0
        row: list[tuple[float, float, list[float], list[float]] | None] = []
        cb = ledger.warm_buckets.get(f"{txn}|canary", {})
        sb = ledger.warm_buckets.get(f"{txn}|stable", {})
        for i in range(closed):
            c, st = cb.get(i), sb.get(i)
            if c is None or st is None or min(c[0], st[0]) < MIN_BUCKET_RUNS:
                row.append(None)
                continue
            row.append((*_diff(c, st, max(floor, ref_var)), c, st))
        cells[txn] = row
    thr_txn, thr_all = (math.log(planned / a) if a > 0 else math.inf for a in _alphas(ledger))
    out = []
    for txn in txns:
        e: list[_Cell] = []
        for i, cell in enumerate(cells[txn]):
            if cell is None:
                e.append(None)
                continue
            d, v, c, st = cell
            e.append((_log_lr(d, v + wander, margin + _envelope(s, i), s.tau_latency), c, st))
        out.append(_detect(txn, e, thr_txn, margin, s, bs))
    if len(txns) >= 2:
        e = []
        for i in range(closed):
            here = [cells[x][i] for x in txns]
            got = [h for h in here if h is not None]
            if len(got) < 2:
                e.append(None)
                continue
            k = float(len(got))
            d = sum(h[0] for h in got) / k
            # Each version's wander is shared by its transactions: not divided by k.
            v = sum(h[1] for h in got) / (k * k) + wander
            c = [sum(h[2][j] for h in got) for j in range(3)]
            st = [sum(h[3][j] for h in got) for j in range(3)]
            e.append((_log_lr(d, v, margin + _envelope(s, i), s.tau_latency), c, st))
        out.append(_detect(ALL, e, thr_all, margin, s, bs))
    return out


def _envelope(s: EngineSettings, i: int) -> float:
    """The allowance over bucket ``i``: the mean of its values at the bucket's ends, which is at
    least its mean over the bucket where the envelope is convex (past the hold), so the null
    stays conservative; its value at the bucket's start (its largest) where the hold ends."""
    t_lo, t_hi = i * s.warmup_bucket_s, (i + 1) * s.warmup_bucket_s
    lo = allowance(s.warmup_amplitude, s.warmup_tau_s, t_lo, s.warmup_hold_s)
    if t_lo < s.warmup_hold_s:
        return lo
    hi = allowance(s.warmup_amplitude, s.warmup_tau_s, t_hi, s.warmup_hold_s)
    return 0.5 * (lo + hi)


def _log_lr(d: float, v: float, null: float, delta: float) -> float:
    """log of the Gaussian likelihood ratio of "theta = null + delta" to "theta = null" for an
    estimate d ~ N(theta, v): an e-value for "theta <= null" (its mean is at most 1 there)."""
    lam = delta / v
    return lam * (d - null) - 0.5 * lam * lam * v


def _diff(c: list[float], st: list[float], floor: float) -> tuple[float, float]:
    def mv(x: list[float]) -> tuple[float, float]:
        n, s1, s2 = x
        mean = s1 / n
        var = max(0.0, (s2 - s1 * s1 / n) / (n - 1.0)) if n >= 2 else 0.0
        return mean, max(var, floor) / n

    mc, vc = mv(c)
    ms, vs = mv(st)
    return mc - ms, vc + vs


def _detect(
    who: str,
    e: list[_Cell],
    threshold: float,
    margin: float,
    s: EngineSettings,
    bs: float,
) -> WarmupOutcome:
    log_r = -math.inf
    best = -math.inf
    start = 0
    span = (0, 0)
    for i, cell in enumerate(e):
        le = 0.0 if cell is None else cell[0]
        prev = float(np.logaddexp(log_r, 0.0))
        if log_r < 0.0:
            # R fell below 1: the stretch of evidence starts again here.
            start = i
        log_r = prev + le
        if log_r > best:
            best, span = log_r, (start, i)
    first, last = span
    c = [0.0, 0.0, 0.0]
    st = [0.0, 0.0, 0.0]
    for cell in e[first : last + 1]:
        if cell is not None:
            c = [a + b for a, b in zip(c, cell[1], strict=True)]
            st = [a + b for a, b in zip(st, cell[2], strict=True)]
    cm = math.exp(c[1] / c[0]) if c[0] else math.nan
    sm = math.exp(st[1] / st[0]) if st[0] else math.nan
    allowed = margin + float(np.mean([_envelope(s, i) for i in range(first, last + 1)]))
    return WarmupOutcome(who, best, threshold, first, last, cm, sm, allowed)
