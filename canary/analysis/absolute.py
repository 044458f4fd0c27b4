"""Tests of one version's results against the absolute objectives (success threshold, p95)."""

from __future__ import annotations

from collections.abc import Sequence

from canary.analysis.checks import Check, fmt_not_yet, fmt_p, three_way
from canary.analysis.metrics import Stats, stats_of
from canary.analysis.stats import binom_sf, clopper_pearson_lower
from canary.probing.result import TransactionResult


def check_success(
    transaction: str,
    results: Sequence[TransactionResult],
    threshold_pct: float,
    *,
    alpha: float,
    suspect_alpha: float,
    who: str = "canary",
) -> Check:
    """Exact binomial test of H0 "success rate >= threshold" on the failures observed.

    Five runs with one failure are not evidence of an 80% service; the test asks how likely
    that many failures are if the version were exactly at the objective.
    """
    s = stats_of(results)
    p0 = 1.0 - threshold_pct / 100.0
    failed = s.n - s.ok
    p = binom_sf(failed, s.n, p0)
    worse = failed > p0 * s.n
    verdict = three_way(p, worse, alpha, suspect_alpha)
    # The best success rate still compatible with the data at the chosen level.
    upper = 100.0 * (1.0 - clopper_pearson_lower(failed, s.n, alpha))
    head = f"{transaction}: {who} success {s.success_rate:.1f}% ({s.ok}/{s.n})"
    if verdict == "fail":
        reason = (
            f"{head} is below the {threshold_pct:.1f}% objective "
            f"(at most {upper:.1f}% with {100 * (1 - alpha):.2f}% confidence; {fmt_p(p)})"
        )
    elif verdict == "inconclusive":
        reason = (
            f"{head} may be below the {threshold_pct:.1f}% objective; not yet sure "
            f"({fmt_not_yet(p, alpha)})"
        )
    else:
        reason = f"{head} meets the {threshold_pct:.1f}% objective ({fmt_p(p)})"
    return Check(
        transaction,
        f"{who}_success_slo",
        verdict,
        reason,
        p,
        {
            "n": s.n,
            "ok": s.ok,
            "success_rate": s.success_rate,
            "threshold": threshold_pct,
            "upper_bound": upper,
            "alpha": alpha,
        },
    )


def check_latency(
    transaction: str,
    results: Sequence[TransactionResult],
    objective_ms: float,
    *,
    alpha: float,
    suspect_alpha: float,
    who: str = "canary",
) -> Check:
    """Distribution-free test of H0 "true p95 <= objective".

    If the p95 is at most the objective, at most 5% of runs exceed it, so the number of runs
    above the objective is at most Binomial(n, 0.05); many more is evidence of a breach.
    """
    s: Stats = stats_of(results)
    above = sum(1 for r in results if r.latency_ms > objective_ms)
    p = binom_sf(above, s.n, 0.05)
    verdict = three_way(p, above > 0.05 * s.n, alpha, suspect_alpha)
    head = f"{transaction}: {who} p95 {s.p95_ms:.0f} ms"
    share = 100.0 * above / s.n if s.n else 0.0
    detail = f"{above} of {s.n} runs ({share:.1f}%) took longer than {objective_ms:.0f} ms"
    if verdict == "fail":
        reason = (
            f"{head} is above the {objective_ms:.0f} ms objective: {detail}, "
            f"more than the 5% a p95 allows ({fmt_p(p)})"
        )
    elif verdict == "inconclusive":
        reason = (
            f"{head} may be above the {objective_ms:.0f} ms objective: {detail} "
            f"({fmt_not_yet(p, alpha)})"
        )
    else:
        reason = f"{head} meets the {objective_ms:.0f} ms objective ({detail})"
    return Check(
        transaction,
        f"{who}_latency_slo",
        verdict,
        reason,
        p,
        {
            "n": s.n,
            "p95_ms": s.p95_ms,
            "objective_ms": objective_ms,
            "above": above,
            "alpha": alpha,
        },
    )
