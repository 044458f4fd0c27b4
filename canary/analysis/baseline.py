"""The stable version's baseline from its history: per-interval bands and a health check."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from canary.analysis.checks import Check, fmt_p
from canary.analysis.metrics import stats_of
from canary.analysis.stats import binom_sf, ewm_mean_std, percentile, wilson, z_upper
from canary.probing.result import TransactionResult

METRICS = ("success_rate", "p95_ms")
# A bucket's p95 from a handful of runs is mostly noise; such buckets are left out of the band.
MIN_BUCKET_N_FOR_P95 = 5


@dataclass(frozen=True)
class Band:
    """EWMA mean and standard deviation of one per-interval series."""

    mean: float
    std: float
    n_buckets: int


@dataclass
class Baseline:
    """Per transaction: bands of success rate (percent) and p95 (ms), plus pooled counts."""

    bucket_s: float
    bands: dict[tuple[str, str], Band] = field(default_factory=dict)
    pooled: dict[str, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def from_history(
        cls,
        results: Sequence[TransactionResult],
        bucket_s: float,
        *,
        version: str | None = None,
        ewm_alpha: float = 0.2,
    ) -> Baseline:
        """Bucket ``results`` (of ``version``, or all) by ``bucket_s`` seconds of ``t``.

        EWMA rather than a plain mean so that the baseline follows slow drift of the stable
        version (load through the day) while one bad interval moves it only a little.
        """
        if bucket_s <= 0:
            raise ValueError("bucket_s must be > 0")
        buckets: dict[str, dict[int, list[TransactionResult]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for r in results:
            if version is None or r.version == version:
                buckets[r.transaction][math.floor(r.t / bucket_s)].append(r)
        base = cls(bucket_s=bucket_s)
        for txn, by_bucket in buckets.items():
            ordered = [by_bucket[k] for k in sorted(by_bucket)]
            success = [100.0 * sum(r.ok for r in rs) / len(rs) for rs in ordered]
            p95 = [
                percentile([r.latency_ms for r in rs], 95)
                for rs in ordered
                if len(rs) >= MIN_BUCKET_N_FOR_P95
            ]
            for metric, series in (("success_rate", success), ("p95_ms", p95)):
                mean, std = ewm_mean_std(series, ewm_alpha)
                base.bands[(txn, metric)] = Band(mean, std, len(series))
            n = sum(len(rs) for rs in ordered)
            base.pooled[txn] = (n, sum(1 for rs in ordered for r in rs if not r.ok))
        return base

    def band(self, transaction: str, metric: str) -> tuple[float, float, int]:
        """(mean, std, n_buckets) of ``metric`` for ``transaction``; (nan, nan, 0) if unknown."""
        if metric not in METRICS:
            raise ValueError(f"unknown baseline metric {metric!r}; known: {', '.join(METRICS)}")
        b = self.bands.get((transaction, metric))
        return (b.mean, b.std, b.n_buckets) if b else (math.nan, math.nan, 0)

    def check_stable(
        self,
        transaction: str,
        stable: Sequence[TransactionResult],
        *,
        alpha: float,
        k_sigma: float = 3.0,
        min_buckets: int = 3,
    ) -> list[Check]:
        """Is stable, in the current window, far outside its own history? (fail = unhealthy)

        Each band is turned into an allowance (mean -/+ k_sigma std) and the current window is
        tested against it with an exact binomial test, so that a small window is not called
        unhealthy on one unlucky failure.
        """
        return [
            self._check_success(transaction, stable, alpha, k_sigma, min_buckets),
            self._check_p95(transaction, stable, alpha, k_sigma, min_buckets),
        ]

    def _check_success(
        self,
        txn: str,
        stable: Sequence[TransactionResult],
        alpha: float,
        k_sigma: float,
        min_buckets: int,
    ) -> Check:
        mean, std, nb = self.band(txn, "success_rate")
        s = stats_of(stable)
        name = "stable_vs_baseline_success"
        if nb < min_buckets or not math.isfinite(std) or s.n == 0:
            return Check(
                txn,
                name,
                "pass",
                f"{txn}: too little stable history to judge stable ({nb} intervals)",
                None,
                {"n_buckets": nb},
            )
        pooled_n, pooled_fail = self.pooled.get(txn, (0, 0))
        # A spotless history gives std 0; the pooled Wilson bound keeps one failure from
        # counting as an infrastructure event.
        allowed = max(
            1.0 - (mean - k_sigma * std) / 100.0,
            wilson(pooled_fail, pooled_n, z_upper(alpha))[1] if pooled_n else 0.0,
        )
        allowed = min(allowed, 1.0)
        failed = s.n - s.ok
        p = binom_sf(failed, s.n, allowed)
        bad = failed > allowed * s.n and p < alpha
        numbers = {
            "n": s.n,
            "ok": s.ok,
            "success_rate": s.success_rate,
            "baseline_mean": mean,
            "baseline_std": std,
            "n_buckets": nb,
            "allowed_error_pct": 100 * allowed,
        }
        head = (
            f"{txn}: stable success {s.success_rate:.1f}% ({s.ok}/{s.n}) vs its history "
            f"{mean:.1f}% ± {std:.1f} over {nb} intervals"
        )
        if bad:
            return Check(
                txn, name, "fail", f"{head}: stable itself is degraded ({fmt_p(p)})", p, numbers
            )
        return Check(txn, name, "pass", f"{head}: stable is healthy ({fmt_p(p)})", p, numbers)

    def _check_p95(
        self,
        txn: str,
        stable: Sequence[TransactionResult],
        alpha: float,
        k_sigma: float,
        min_buckets: int,
    ) -> Check:
        mean, std, nb = self.band(txn, "p95_ms")
        name = "stable_vs_baseline_p95"
        if nb < min_buckets or not math.isfinite(std) or not stable:
            return Check(
                txn,
                name,
                "pass",
                f"{txn}: too little stable history to judge stable latency ({nb} intervals)",
                None,
                {"n_buckets": nb},
            )
        # Runs above mean + k std of the historical p95 should be under 5% when stable is as
        # it was; many more means stable's latency moved.
        reference = mean + k_sigma * std
        n = len(stable)
        above = sum(1 for r in stable if r.latency_ms > reference)
        p = binom_sf(above, n, 0.05)
        p95_now = percentile([r.latency_ms for r in stable], 95)
        numbers = {
            "n": n,
            "p95_ms": p95_now,
            "baseline_mean": mean,
            "baseline_std": std,
            "n_buckets": nb,
            "reference_ms": reference,
            "above": above,
        }
        head = (
            f"{txn}: stable p95 {p95_now:.0f} ms vs its history {mean:.0f} ± {std:.0f} ms "
            f"over {nb} intervals; {above} of {n} runs above {reference:.0f} ms"
        )
        if above > 0.05 * n and p < alpha:
            return Check(
                txn, name, "fail", f"{head}: stable itself is slow ({fmt_p(p)})", p, numbers
            )
        return Check(txn, name, "pass", f"{head}: stable is healthy ({fmt_p(p)})", p, numbers)
