"""A step's evidence: whether it has runs enough to move on, and the low-volume hold reasons with
their sample-size estimates."""

from __future__ import annotations

import math
from dataclasses import dataclass

from canary.analysis.ledger import Ledger, N
from canary.analysis.sequential import Moments, normal_mixture_log_e
from canary.analysis.stats import binom_sf
from canary.analysis.tests import Wander, log_weights, thresholds

# One-sided level of the "no sign of trouble" screen against stable's history: it only decides
# whether a step may end, never a rollback, so it leans towards holding.
_HISTORY_SCREEN_P = 0.05
_HISTORY_SCREEN_Z = 1.6449
# Stable's history must rest on this many runs of a transaction to stand in for a thin stable.
_MIN_HISTORY_RUNS = 100
# Spread of log latency assumed when stable's own is not known yet.
_DEFAULT_LOG_SD = 0.35


def step_evidence(nc: float, ns: float) -> float:
    """What ``nc`` canary and ``ns`` stable runs are worth as runs of each version: their
    harmonic mean, since a comparison's variance goes as 1/nc + 1/ns. Probes that come in
    bursts leave one version a few runs short in a step while the other has plenty."""
    return 0.0 if nc <= 0 or ns <= 0 else 2.0 * nc * ns / (nc + ns)


def enough(nc: float, ns: float, need: int) -> bool:
    """A step's runs suffice: as much as ``need`` of each (harmonic mean, at least half of it
    each), or ``need`` canary runs beside a fifth as many of stable's (the canary was seen at
    this weight; stable, thin in this step, is judged by all its runs and its history)."""
    if step_evidence(nc, ns) >= need and min(nc, ns) >= math.ceil(need / 2):
        return True
    return nc >= need and ns >= math.ceil(need / 5)


@dataclass(frozen=True)
class StepRuns:
    """One version's runs of one transaction in the current step (outside the warm-up)."""

    n: int
    fails: int
    latency: Moments  # log latency of the successful runs


def step_runs(ledger: Ledger, key: str) -> StepRuns:
    """The step's runs of series ``key`` from its buckets (the step's count from the ledger)."""
    lo = math.floor(ledger.step_start / ledger.settings.forecast_bucket_s)
    buckets = [b for b in ledger.buckets.get(key, []) if b.idx >= lo]
    ok = float(sum(b.ok for b in buckets))
    lat = Moments(ok, 0.0, sum(b.logsum for b in buckets), sum(b.logsq for b in buckets))
    return StepRuns(ledger.step_runs(key), sum(b.fails for b in buckets), lat)


def fine_against_history(ledger: Ledger, wander: Wander, txn: str, canary: StepRuns) -> bool:
    """Whether the canary's runs in this step show no sign of trouble against stable's history
    (the runs before the rollout): failures not significantly above the history's rate plus
    the tolerance, typical latency not significantly above the history's plus the tolerance
    (with wander, as history and now are minutes apart). What lets a step end beside a stable
    too thin in it to compare with; the anytime-valid tests still judge every run."""
    s, slo = ledger.settings, ledger.slo
    ref = ledger.reference.get(txn)
    if not ref or ref.get("err", -1.0) < 0 or ref.get("n", 0.0) < _MIN_HISTORY_RUNS:
        return False
    allowed = min(1.0, ref["err_upper"] + slo.max_error_rate_increase_pp / 100.0)
    if canary.fails and binom_sf(canary.fails, canary.n, allowed) < _HISTORY_SCREEN_P:
        return False
    lat = canary.latency
    if lat.n < 2:
        return lat.n == canary.n == 0
    log_sd = max((math.log(ref["p95"]) - ref["logmean"]) / 1.6449, s.latency_floor_sd)
    var = max(lat.var, log_sd * log_sd) / lat.n + wander.get(ledger, txn, "latency")
    excess = lat.mean - ref["logmean"] - math.log1p(slo.max_latency_increase_pct / 100.0)
    return excess <= _HISTORY_SCREEN_Z * math.sqrt(var)


def runs_to_catch(ledger: Ledger, wander: Wander, txn: str) -> float:
    """Runs of each version the latency test needs, on average, to roll back a canary twice the
    tolerance slower (its estimate one tolerance beyond the null margin): the normal mixture's
    e-value on the whole rollout's window reaching the per-transaction bar, with stable's
    log-latency spread and the wander variance (which more runs cannot shrink: inf when the
    wander alone hides such a canary)."""
    s, slo = ledger.settings, ledger.slo
    bar, _ = thresholds(s, slo, len(ledger.transactions))
    bar -= log_weights(s, 1)[0]
    margin = math.log1p(slo.max_latency_increase_pct / 100.0)
    spread = ledger.latency(f"{txn}|stable", 0)
    sd2 = max(spread.var if spread.n >= 2 else 0.0, _DEFAULT_LOG_SD**2)
    extra = wander.get(ledger, txn, "latency")

    def reaches(n: float) -> bool:
        v = 2.0 * sd2 / n + extra
        return normal_mixture_log_e(2.0 * margin, v, margin, s.tau_latency) >= bar

    hi = 2.0
    while not reaches(hi):
        hi *= 2.0
        if hi > 1e9:
            return math.inf
    lo = hi / 2.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if reaches(mid) else (mid, hi)
    return math.ceil(hi)


def _rate(ledger: Ledger, key: str, rel: float) -> float:
    """Runs per second of one series over the rollout so far, the warm-up included: steadier
    than one step's count when probes come in bursts with pauses."""
    txn, version = key.split("|")
    n = ledger.cum[key][N] + ledger.warmup_runs(txn, version)[0]
    return n / rel if rel > 0 else 0.0


def _seconds_to_enough(nc: float, ns: float, rc: float, rs: float, need: int) -> float:
    """Seconds until the step's runs suffice (``enough``) at these rates; inf if never."""
    if rc <= 0 or rs <= 0:
        return math.inf
    hi = 1.0
    while not enough(nc + rc * hi, ns + rs * hi, need):
        hi *= 2.0
        if hi > 1e8:
            return math.inf
    lo = 0.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if enough(nc + rc * mid, ns + rs * mid, need) else (mid, hi)
    return hi


def evidence_holds(ledger: Ledger, wander: Wander, rel: float) -> list[str]:
    """Too few runs in this step, per transaction, with how long the engine needs at the rates
    measured over the rollout: until the step has runs enough, and (a sample-size estimate)
    until a canary twice the tolerance slower would be caught."""
    s, slo = ledger.settings, ledger.slo
    need = s.min_samples
    out = []
    counts = {
        txn: (ledger.step_runs(f"{txn}|canary"), ledger.step_runs(f"{txn}|stable"))
        for txn in ledger.transactions
    }
    # Probes that come in batches with pauses leave a step's count per transaction anywhere
    # between a third and twice its mean: the step as a whole is the steadier measure.
    pooled = sum(min(step_evidence(nc, ns), 2.0 * need) for nc, ns in counts.values())
    whole = pooled >= need * len(counts)
    for txn, (nc, ns) in counts.items():
        kc, ks = f"{txn}|canary", f"{txn}|stable"
        if enough(nc, ns, need):
            continue
        if (nc >= need or (whole and nc >= math.ceil(need / 2))) and fine_against_history(
            ledger, wander, txn, step_runs(ledger, kc)
        ):
            # Stable is too thin in this step to compare with, or this transaction's runs
            # fell short while the step has runs enough: stable's history stands in.
            continue
        msg = (
            f"{txn}: too little evidence: {nc} canary and {ns} stable runs in this step, "
            f"need as much as {need} of each"
        )
        rc, rs = _rate(ledger, kc, rel), _rate(ledger, ks, rel)
        more = _seconds_to_enough(nc, ns, rc, rs, need)
        if math.isfinite(more):
            msg += (
                f"; at {rc:.2g} canary and {rs:.2g} stable runs/s that is about "
                f"{max(more, 1.0):.0f} s more (rates over the rollout)"
            )
            n_catch = runs_to_catch(ledger, wander, txn)
            slower = 100.0 * ((1.0 + slo.max_latency_increase_pct / 100.0) ** 2 - 1.0)
            if math.isfinite(n_catch):
                minutes = n_catch / min(rc, rs) / 60.0
                msg += (
                    f", and catching a canary {slower:.0f}% slower (twice the tolerance) takes "
                    f"about {n_catch:.0f} runs of each version ({minutes:.0f} min at this rate)"
                )
            else:
                sd = 100.0 * math.expm1(math.sqrt(wander.get(ledger, txn, "latency")))
                msg += (
                    f"; the latency test cannot tell a canary {slower:.0f}% slower (twice the "
                    f"tolerance) from this stable's wander (sd {sd:.1f}% of the difference) "
                    f"at any rate"
                )
        out.append(msg)
    return out
