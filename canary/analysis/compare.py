"""Canary versus stable in the same time window, per transaction: error-rate and latency tests."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from canary.analysis.checks import Check, fmt_not_yet, fmt_p, three_way
from canary.analysis.metrics import stats_of
from canary.analysis.slo import SLO
from canary.analysis.stats import (
    bootstrap_ratio,
    hodges_lehmann_lower,
    mann_whitney_greater,
    newcombe_bounds,
    newcombe_p_value,
    z_upper,
)
from canary.probing.result import TransactionResult

DEFAULT_BOOTSTRAP = 2000
# Below this, a sample p95 is one of the last two runs and its bootstrap is too optimistic
# (measured: 2% false alarms at nominal 1% with 20 runs); the shift test covers such windows.
MIN_N_P95 = 20


def restricted_rate_difference_vec(
    cn: npt.NDArray[np.float64],
    ck: npt.NDArray[np.float64],
    sn: npt.NDArray[np.float64],
    sk: npt.NDArray[np.float64],
    margin: float,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Canary minus stable error rate, and its variance at the null's boundary.

    The variance is that of the two rates fitted by maximum likelihood under "canary - stable
    = ``margin``" (Farrington and Manning's closed form of the cubic score equation), as in a
    score test: with a rare failure rate, the plug-in variance of a worse canary counts its
    excess failures twice (as the effect and as noise) and needs a third more runs to see a
    +1.5 pp step (docs/analysis.md). Callers mask out empty windows.
    """
    n1, n2 = np.maximum(cn, 1.0), np.maximum(sn, 1.0)
    p1, p2 = ck / n1, sk / n2
    th = n2 / n1
    a = 1.0 + th
    b = -(1.0 + th + p1 + th * p2 + margin * (th + 2.0))
    c = margin * margin + margin * (2.0 * p1 + th + 1.0) + p1 + th * p2
    d = -p1 * margin * (1.0 + margin)
    v = b**3 / (27.0 * a**3) - b * c / (6.0 * a * a) + d / (2.0 * a)
    u = np.sign(v) * np.sqrt(np.maximum(b * b / (9.0 * a * a) - c / (3.0 * a), 0.0))
    cube = np.where(u == 0.0, 1.0, u**3)
    w = (math.pi + np.arccos(np.clip(v / cube, -1.0, 1.0))) / 3.0
    r1 = np.clip(2.0 * u * np.cos(w) - b / (3.0 * a), 0.0, 1.0)
    r2 = np.clip(r1 - margin, 0.0, 1.0)
    return p1 - p2, r1 * (1.0 - r1) / n1 + r2 * (1.0 - r2) / n2


def compare_error_rate(
    transaction: str,
    canary: Sequence[TransactionResult],
    stable: Sequence[TransactionResult],
    tolerance_pp: float,
    *,
    alpha: float,
    suspect_alpha: float,
) -> Check:
    """One-sided test of H0 "canary error rate - stable error rate <= tolerance".

    Newcombe's hybrid score (Wilson-based) bound on the difference of proportions, inverted
    for a p-value: it keeps its coverage at 0 or 100% and at tens of samples, where the Wald
    interval does not. The tolerance is the null margin, so a regression smaller than the
    tolerance can never fail the canary.
    """
    c, s = stats_of(canary), stats_of(stable)
    kc, ks = c.n - c.ok, s.n - s.ok
    margin = tolerance_pp / 100.0
    p = newcombe_p_value(kc, c.n, ks, s.n, margin)
    lower = 100.0 * newcombe_bounds(kc, c.n, ks, s.n, z_upper(alpha))[0]
    diff = c.error_rate_pct - s.error_rate_pct
    verdict = three_way(p, diff > tolerance_pp, alpha, suspect_alpha)
    head = (
        f"{transaction}: canary success {c.success_rate:.1f}% ({c.ok}/{c.n}) "
        f"vs stable {s.success_rate:.1f}% ({s.ok}/{s.n}); {diff:+.1f} pp errors"
    )
    if verdict == "fail":
        reason = f"{head} exceeds tolerance {tolerance_pp:g} pp ({fmt_p(p)})"
    elif verdict == "inconclusive":
        reason = (
            f"{head} is above tolerance {tolerance_pp:g} pp but not yet significant "
            f"({fmt_not_yet(p, alpha)})"
        )
    else:
        reason = f"{head} is within tolerance {tolerance_pp:g} pp ({fmt_p(p)})"
    return Check(
        transaction,
        "error_rate_vs_stable",
        verdict,
        reason,
        p,
        {
            "canary_n": c.n,
            "canary_errors": kc,
            "stable_n": s.n,
            "stable_errors": ks,
            "difference_pp": diff,
            "lower_bound_pp": lower,
            "tolerance_pp": tolerance_pp,
            "alpha": alpha,
        },
    )


def compare_latency_p95(
    transaction: str,
    canary: Sequence[TransactionResult],
    stable: Sequence[TransactionResult],
    tolerance_pct: float,
    *,
    alpha: float,
    suspect_alpha: float,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> Check:
    """One-sided bootstrap test of H0 "canary p95 / stable p95 <= 1 + tolerance".

    The p-value is the share of bootstrap ratios at or under the tolerance (add-one so it is
    never 0). The seed is fixed so that the same results always give the same decision.
    """
    c, s = stats_of(canary), stats_of(stable)
    if min(c.n, s.n) < MIN_N_P95:
        return Check(
            transaction,
            "p95_vs_stable",
            "pass",
            f"{transaction}: p95 not compared with {c.n} canary and {s.n} stable runs "
            f"(needs {MIN_N_P95} of each)",
            None,
            {"canary_n": c.n, "stable_n": s.n, "skipped": True},
        )
    limit = 1.0 + tolerance_pct / 100.0
    ratios = bootstrap_ratio(
        [r.latency_ms for r in canary], [r.latency_ms for r in stable], 95, n_boot=n_boot, seed=seed
    )
    p = float((1 + np.count_nonzero(ratios <= limit)) / (n_boot + 1))
    lower = float(np.quantile(ratios, alpha)) if np.isfinite(ratios).any() else float("nan")
    ratio = c.p95_ms / s.p95_ms if s.p95_ms > 0 else float("inf")
    increase = 100.0 * (ratio - 1.0)
    verdict = three_way(p, ratio > limit, alpha, suspect_alpha)
    head = (
        f"{transaction}: canary p95 {c.p95_ms:.0f} ms vs stable {s.p95_ms:.0f} ms "
        f"({increase:+.0f}%, n={c.n}/{s.n})"
    )
    if verdict == "fail":
        reason = (
            f"{head} exceeds tolerance +{tolerance_pct:g}% "
            f"(at least {100 * (lower - 1):+.0f}% with {100 * (1 - alpha):.2f}% confidence; "
            f"{fmt_p(p)})"
        )
    elif verdict == "inconclusive":
        reason = (
            f"{head} is above tolerance +{tolerance_pct:g}% but not yet significant "
            f"({fmt_not_yet(p, alpha)})"
        )
    else:
        reason = f"{head} is within tolerance +{tolerance_pct:g}% ({fmt_p(p)})"
    return Check(
        transaction,
        "p95_vs_stable",
        verdict,
        reason,
        p,
        {
            "canary_n": c.n,
            "stable_n": s.n,
            "canary_p95_ms": c.p95_ms,
            "stable_p95_ms": s.p95_ms,
            "ratio": ratio,
            "lower_bound_ratio": lower,
            "tolerance_pct": tolerance_pct,
            "alpha": alpha,
        },
    )


def compare_latency_shift(
    transaction: str,
    canary: Sequence[TransactionResult],
    stable: Sequence[TransactionResult],
    tolerance_pct: float,
    *,
    alpha: float,
    suspect_alpha: float,
) -> Check:
    """One-sided Mann-Whitney test of H0 "canary latency <= stable latency x (1 + tolerance)".

    On log latency, so the shift is a ratio: a release that slows every run by a factor shows
    here with far fewer runs than in the p95 alone, which rests on the slowest few.
    """
    c, s = stats_of(canary), stats_of(stable)
    lc = np.log(np.maximum([r.latency_ms for r in canary], 1e-3))
    ls = np.log(np.maximum([r.latency_ms for r in stable], 1e-3))
    limit = math.log1p(tolerance_pct / 100.0)
    p = mann_whitney_greater(lc, ls, limit)
    est, lower = hodges_lehmann_lower(lc, ls, alpha)
    ratio, lower_ratio = math.exp(est), math.exp(lower)
    verdict = three_way(p, est > limit, alpha, suspect_alpha)
    head = (
        f"{transaction}: canary latency typically x{ratio:.2f} stable's "
        f"(median {c.p50_ms:.0f} ms vs {s.p50_ms:.0f} ms, n={c.n}/{s.n})"
    )
    if verdict == "fail":
        reason = (
            f"{head}; exceeds tolerance +{tolerance_pct:g}% "
            f"(at least {100 * (lower_ratio - 1):+.0f}% with {100 * (1 - alpha):.2f}% "
            f"confidence; {fmt_p(p)})"
        )
    elif verdict == "inconclusive":
        reason = (
            f"{head}; above tolerance +{tolerance_pct:g}% but not yet significant "
            f"({fmt_not_yet(p, alpha)})"
        )
    else:
        reason = f"{head}; within tolerance +{tolerance_pct:g}% ({fmt_p(p)})"
    return Check(
        transaction,
        "latency_vs_stable",
        verdict,
        reason,
        p,
        {
            "canary_n": c.n,
            "stable_n": s.n,
            "canary_p50_ms": c.p50_ms,
            "stable_p50_ms": s.p50_ms,
            "ratio": ratio,
            "lower_bound_ratio": lower_ratio,
            "tolerance_pct": tolerance_pct,
            "alpha": alpha,
        },
    )


def compare(
    transaction: str,
    canary: Sequence[TransactionResult],
    stable: Sequence[TransactionResult],
    slo: SLO,
    *,
    alpha: float,
    suspect_alpha: float,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> list[Check]:
    """The canary-versus-stable tests for one transaction, each at level ``alpha``."""
    return [
        compare_error_rate(
            transaction,
            canary,
            stable,
            slo.max_error_rate_increase_pp,
            alpha=alpha,
            suspect_alpha=suspect_alpha,
        ),
        compare_latency_p95(
            transaction,
            canary,
            stable,
            slo.max_latency_increase_pct,
            alpha=alpha,
            suspect_alpha=suspect_alpha,
            n_boot=n_boot,
            seed=seed,
        ),
        compare_latency_shift(
            transaction,
            canary,
            stable,
            slo.max_latency_increase_pct,
            alpha=alpha,
            suspect_alpha=suspect_alpha,
        ),
    ]
