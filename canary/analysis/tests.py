"""The anytime-valid tests of canary against stable, on the ledger, with a variance that allows for
dependence (latency that wanders within a version)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from canary.analysis.compare import restricted_rate_difference_vec
from canary.analysis.ledger import FAIL, OK, OVER_SLO, S1, S2, TAIL, TAIL_N, Batches, Ledger, N
from canary.analysis.sequential import (
    bernoulli_log_e_vec,
    mean_difference_vec,
    normal_mixture_log_e_vec,
    rate_difference_vec,
)
from canary.analysis.settings import EngineSettings
from canary.analysis.slo import SLO

ALL = "all transactions"
# Pseudo-batches of the prior in the wander estimate: a few batches are enough to overrule it.
_PRIOR_BATCHES = 4.0
# A tail share moves by about phi(1.645) = 0.103 per sd of log latency shifted.
_TAIL_DENSITY = 0.103


@dataclass
class TestOutcome:
    """One sequential test of one transaction (or ALL): combined evidence and its best window."""

    __test__ = False  # not a pytest class, despite its name

    transaction: str
    test: str
    log_e: float
    threshold: float  # log(1/alpha share): reject at or above
    start: float  # seconds after t0 where the most telling window starts
    shared: bool = False  # an absolute breach that stable shows too
    lean: bool = False  # looks beyond tolerance and is surely worse than stable: do not add traffic


def wander_variance(
    b: Batches, prior_sd: float, cap_sd: float, prior_batches: float = _PRIOR_BATCHES
) -> float:
    """The variance of a version's level that more runs cannot average away.

    The spread of per-batch values beyond what their run counts explain, measured robustly
    (median absolute deviation, so that an infrastructure step part-way through is not all
    taken for wander), shrunk toward ``prior_sd`` while batches are few, and capped at
    ``cap_sd``.
    """
    m = b.diffs.size
    prior = prior_sd * prior_sd
    if m >= 4:
        med = float(np.median(b.diffs))
        sd = 1.4826 * float(np.median(np.abs(b.diffs - med)))
        excess = max(0.0, sd * sd - float(np.median(b.variances)))
        est = (prior_batches * prior + m * excess) / (prior_batches + m)
    else:
        est = prior
    return min(est, cap_sd * cap_sd)


class Wander:
    """Per transaction (and pooled), the variance that wander adds to a canary-minus-stable
    difference of latency or tail share: twice stable's own (each version wanders by itself,
    the canary as much as stable), measured on stable only, so that the canary's regression,
    drift or leak is never taken for wander. Computed once per batch, when one closes."""

    def __init__(self) -> None:
        self._key: tuple[int, int] | None = None
        self._values: dict[tuple[str, str], float] = {}

    def get(self, ledger: Ledger, scope: str, metric: str) -> float:
        s = ledger.settings
        newest = max((v[-1].idx for v in ledger.buckets.values() if v), default=-1)
        key = (newest // max(1, round(s.batch_s / s.forecast_bucket_s)), len(ledger.transactions))
        if key != self._key:
            ledger.close_batches(key[0])
            self._key, self._values = key, {}
        found = self._values.get((scope, metric))
        if found is None:
            found = self._compute(ledger, scope, metric)
            self._values[(scope, metric)] = found
        return found

    def _compute(self, ledger: Ledger, scope: str, metric: str) -> float:
        cap, prior = _wander_cap_prior(ledger)
        # Stable's wander in its history weighs as the batches it was measured on: an hour of
        # history outweighs the first minutes of a rollout.
        k0 = max(_PRIOR_BATCHES, float(ledger.history_wander[1]))
        if metric == "tail":
            # The same cap in tail-share units: a shift of ``cap`` in log latency moves the
            # share past a p95 by about density x cap / sd.
            sd = _log_sd(ledger, scope)
            cap, prior = _TAIL_DENSITY * cap / sd, _TAIL_DENSITY * prior / sd
        own = _scoped(ledger, scope, metric, ledger.batches)
        if own is None:
            return 2.0 * min(prior, cap) ** 2
        stable_based = 2.0 * wander_variance(own, prior, cap, k0)
        s = ledger.settings
        pairs = _scoped(ledger, scope, metric, ledger.paired_batches) if s.paired_wander else None
        if pairs is None:
            return stable_based
        # The difference's own spread between batches: wander shared by both versions (an
        # infrastructure's, a time of day's) cancels there, where stable's spread counts it.
        # Slow wander needs many batches to show its full spread, so the stable-based value is
        # the prior, worth paired_wander_prior_batches batches; and the smaller of the two is
        # kept, so that a canary's drift or leak (which widens the paired spread) never widens
        # the variance beyond what stable alone gives.
        paired = wander_variance(
            pairs, math.sqrt(stable_based), math.sqrt(2.0) * cap, s.paired_wander_prior_batches
        )
        return min(stable_based, paired)


def _scoped(
    ledger: Ledger, scope: str, metric: str, source: Callable[[str, str], Batches]
) -> Batches | None:
    """One transaction's batches from ``source``, or, for ALL, the equal-weight average of every
    transaction's over the batches they all have (None when one of them has none yet)."""
    if scope != ALL:
        return source(scope, metric)
    parts = [source(t, metric) for t in ledger.transactions]
    if not parts or any(p.diffs.size == 0 for p in parts):
        return None
    common = set(parts[0].index.tolist())
    for p in parts[1:]:
        common &= set(p.index.tolist())
    keep = sorted(common)
    k = float(len(parts))
    diffs = np.zeros(len(keep))
    variances = np.zeros(len(keep))
    for p in parts:
        pos = {int(i): n for n, i in enumerate(p.index)}
        rows = [pos[int(i)] for i in keep]
        diffs += p.diffs[rows] / k
        variances += p.variances[rows] / (k * k)
    return Batches(np.asarray(keep, dtype=float), diffs, variances)


def _wander_cap_prior(ledger: Ledger) -> tuple[float, float]:
    """One version's wander sd: its cap, and its prior (the floor or stable's history)."""
    s = ledger.settings
    # Settings are for the difference; one version's share is half its variance.
    cap = math.log1p(s.max_wander_pct / 100.0) / math.sqrt(2.0)
    prior = math.log1p(s.wander_prior_pct / 100.0) / math.sqrt(2.0)
    return cap, max(prior, math.sqrt(ledger.history_wander[0]))


def wander_prior(ledger: Ledger) -> float:
    """The wander variance of a latency difference before the rollout has batches of its own:
    twice stable's prior (history or floor), capped; what the warm-up test adds."""
    cap, prior = _wander_cap_prior(ledger)
    return 2.0 * min(prior, cap) ** 2


def _log_sd(ledger: Ledger, txn: str) -> float:
    """Stable's log-latency spread from its reference (fixed for the rollout): p95 = e^(mu+1.645sd)."""
    scopes = ledger.transactions if txn == ALL else [txn]
    sds = [
        (math.log(ref["p95"]) - ref["logmean"]) / 1.6449
        for ref in (ledger.reference.get(x) for x in scopes)
        if ref and ref.get("p95", 0) > 0 and "logmean" in ref
    ]
    return max(float(np.mean(sds)) if sds else 0.35, ledger.settings.latency_floor_sd, 0.05)


def thresholds(settings: EngineSettings, slo: SLO, n_txns: int) -> tuple[float, float]:
    """log rejection bars (per transaction, pooled): Bonferroni over the tests, with a larger
    share of alpha for the three pooled tests (docs/analysis.md)."""
    per = 4 + (slo.latency_p95_ms is not None)
    # The warm-up allowance test (warmup.py), when there is a warm-up, has its own share.
    alpha = settings.alpha * (1.0 - (settings.warmup_alpha_share if settings.warmup_s > 0 else 0))
    txn = pooled = math.log(max(1, per * n_txns) / alpha)
    if n_txns >= 2:
        share = settings.pooled_alpha_share
        if share > 0:
            txn = math.log(per * n_txns / ((1.0 - share) * alpha))
            pooled = math.log(3.0 / (share * alpha))
        else:
            txn = pooled = math.log((per * n_txns + 3) / alpha)
    return txn, pooled


def log_weights(settings: EngineSettings, windows: int) -> list[float]:
    # Part of the prior on "since the start", the rest spread over the planned restarts: a
    # weighted average of e-processes started at different times is itself an e-process.
    r = max(1, settings.max_restarts)
    share = settings.restart_share
    return [math.log(1.0 - share)] + [math.log(share / r)] * (windows - 1)


def run_tests(ledger: Ledger, wander: Wander) -> list[TestOutcome]:
    """Every sequential test, with evidence combined over the restart windows."""
    s, slo = ledger.settings, ledger.slo
    txns = ledger.transactions
    pooled = len(txns) >= 2
    txn_threshold, pooled_threshold = thresholds(s, slo, len(txns))
    windows = len(ledger.snaps)
    logw = np.asarray(log_weights(s, windows))
    minn = s.min_window_n
    err_margin = slo.max_error_rate_increase_pp / 100.0
    lat_margin = math.log1p(slo.max_latency_increase_pct / 100.0)
    p_fail = 1.0 - slo.success_threshold / 100.0
    out: list[TestOutcome] = []

    def add(
        txn: str,
        name: str,
        le: npt.NDArray[np.float64],
        valid: Any,
        lean: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float, float] | None = None,
    ) -> None:
        threshold = pooled_threshold if txn == ALL else txn_threshold
        score = np.where(valid, logw + le, -np.inf)
        if not np.isfinite(score).any():
            return
        top = float(score.max())
        total = top + math.log(float(np.exp(score - top).sum()))
        best = int(np.argmax(score))
        leaning = False
        if lean is not None and s.lean_rule != "off":
            # Some window whose estimate is beyond the tolerance while the canary is, with
            # the full confidence of a rollback, worse than stable at all.
            d, v, margin, tau = lean
            zero = normal_mixture_log_e_vec(d, v, 0.0, tau)
            worse = valid & (logw + zero >= threshold)
            if s.lean_rule == "estimate":
                leaning = bool(np.any(worse & (d > margin)))
            else:
                within = normal_mixture_log_e_vec(-d, v, -margin, tau)
                leaning = bool(np.any(worse & (logw + within < threshold)))
        out.append(TestOutcome(txn, name, total, threshold, best * s.restart_s, lean=leaning))

    pooled_err: list[tuple[Any, Any]] = []
    pooled_lat: list[tuple[Any, Any]] = []
    pooled_ok = np.ones(windows, dtype=bool)
    all_n = np.zeros(windows)
    all_fail = np.zeros(windows)
    phi_all = 1.0
    for txn in txns:
        c = ledger.windows(f"{txn}|canary")
        st = ledger.windows(f"{txn}|stable")
        has = c[:, N] > 0
        all_n += c[:, N]
        all_fail += c[:, FAIL]
        # Failures in runs: the evidence of k clustered failures is that of k / phi independent
        # ones. An e-value raised to a power 1/phi <= 1 is still an e-value (Jensen).
        phi = ledger.failure_dispersion(txn)
        phi_all = max(phi_all, phi)
        if p_fail > 0:
            le = bernoulli_log_e_vec(c[:, FAIL], c[:, N], p_fail) / phi
            add(txn, "success objective", le, has)
        if slo.latency_p95_ms is not None:
            add(txn, "latency objective", bernoulli_log_e_vec(c[:, OVER_SLO], c[:, N], 0.05), has)
        enough = (c[:, N] >= minn) & (st[:, N] >= minn)
        pooled_ok &= enough
        if s.error_null_variance:
            d_err, v_err = restricted_rate_difference_vec(
                c[:, N], c[:, FAIL], st[:, N], st[:, FAIL], err_margin
            )
        else:
            d_err, v_err = rate_difference_vec(c[:, N], c[:, FAIL], st[:, N], st[:, FAIL])
        err = (d_err, v_err * phi)
        pooled_err.append(err)
        # Latency of successful runs only; the wander variance does not shrink with more runs,
        # so a version that drifts by itself can never pile up evidence against the other.
        lat_ok = (c[:, OK] >= minn) & (st[:, OK] >= minn)
        d, v = mean_difference_vec(c[:, [OK, S1, S2]], st[:, [OK, S1, S2]], s.latency_floor_sd)
        pooled_lat.append((d, v))
        lat = (d, v + wander.get(ledger, txn, "latency"))
        for name, (d, v), margin, tau, valid in (
            ("errors", err, err_margin, s.tau_error, enough),
            ("latency", lat, lat_margin, s.tau_latency, lat_ok),
        ):
            le = normal_mixture_log_e_vec(d, v, margin, tau)
            add(txn, name, le, valid, (d, v, margin, tau))
        tail_ok = (c[:, TAIL_N] >= minn) & (st[:, TAIL_N] >= minn)
        if tail_ok.any():
            d, v = rate_difference_vec(c[:, TAIL_N], c[:, TAIL], st[:, TAIL_N], st[:, TAIL])
            v = v + wander.get(ledger, txn, "tail")
            add(txn, "tail latency", normal_mixture_log_e_vec(d, v, 0.0, s.tau_error), tail_ok)
        pooled_ok &= lat_ok
    # Pooled over transactions (equal weights): a small regression of every transaction
    # shows sooner in the average than in any one of them.
    if pooled and p_fail > 0:
        # The objective is a share of all transactions, so it is also tested pooled.
        le = bernoulli_log_e_vec(all_fail, all_n, p_fail) / phi_all
        add(ALL, "success objective", le, all_n > 0)
    if pooled and pooled_ok.any():
        k = float(len(txns))
        for name, parts, margin, tau in (
            ("errors", pooled_err, err_margin, s.tau_error),
            ("latency", pooled_lat, lat_margin, s.tau_latency),
        ):
            d = sum(p[0] for p in parts) / k
            v = sum(p[1] for p in parts) / (k * k)
            if name == "latency":
                v = v + wander.get(ledger, ALL, "latency")
            add(
                ALL,
                name,
                normal_mixture_log_e_vec(d, v, margin, tau),
                pooled_ok,
                (d, v, margin, tau),
            )
    return out


def divergence(ledger: Ledger, wander: Wander, txn: str, metric: str) -> float:
    """Best log e-value, over restart windows, that the canary is pulling away from stable.

    The same sequential test as the comparison, with a null margin of half the tolerance
    instead of the whole: evidence that the canary is clearly worse, not yet that it is out
    of bounds. A canary slightly worse but well within it (which a long enough rollout would
    show to be "worse than stable" at a margin of zero) never qualifies.
    """
    s = ledger.settings
    c = ledger.windows(f"{txn}|canary")
    st = ledger.windows(f"{txn}|stable")
    ok = (c[:, N] >= s.min_window_n) & (st[:, N] >= s.min_window_n)
    if not ok.any():
        return -math.inf
    if metric == "p95":
        margin = 0.5 * math.log1p(ledger.slo.max_latency_increase_pct / 100.0)
        d, v = mean_difference_vec(c[:, [OK, S1, S2]], st[:, [OK, S1, S2]], s.latency_floor_sd)
        v = v + wander.get(ledger, txn, "latency")
        le = normal_mixture_log_e_vec(d, v, margin, s.tau_latency)
    else:
        margin = 0.5 * ledger.slo.max_error_rate_increase_pp / 100.0
        d, v = rate_difference_vec(c[:, N], c[:, FAIL], st[:, N], st[:, FAIL])
        le = normal_mixture_log_e_vec(d, v, margin, s.tau_error)
    score = np.where(ok, np.asarray(log_weights(s, len(ledger.snaps))) + le, -np.inf)
    return float(score.max())
