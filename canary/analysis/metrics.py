"""Per-version, per-transaction summary statistics (Stats) over TransactionResults."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from canary.analysis.stats import percentile
from canary.probing.result import TransactionResult


@dataclass
class Stats:
    """Counts, rates in percent and latency of whole transactions; rates are nan when n == 0."""

    n: int
    ok: int
    success_rate: float
    error_rate_pct: float
    p50_ms: float
    p95_ms: float
    mean_ms: float

    @property
    def failed(self) -> int:
        return self.n - self.ok

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: nan becomes None."""
        return {
            "n": self.n,
            "ok": self.ok,
            "success_rate": json_float(self.success_rate),
            "error_rate_pct": json_float(self.error_rate_pct),
            "p50_ms": json_float(self.p50_ms),
            "p95_ms": json_float(self.p95_ms),
            "mean_ms": json_float(self.mean_ms),
        }


def json_float(x: float | None, ndigits: int = 6) -> float | None:
    """A float safe for strict JSON: None for nan/inf/None, rounded for readability."""
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), ndigits)


def stats_of(results: Sequence[TransactionResult]) -> Stats:
    """Stats of one group of results (any mix of versions and transactions)."""
    n = len(results)
    ok = sum(1 for r in results if r.ok)
    lat = [r.latency_ms for r in results]
    if n == 0:
        return Stats(0, 0, math.nan, math.nan, math.nan, math.nan, math.nan)
    return Stats(
        n=n,
        ok=ok,
        success_rate=100.0 * ok / n,
        error_rate_pct=100.0 * (n - ok) / n,
        p50_ms=percentile(lat, 50),
        p95_ms=percentile(lat, 95),
        mean_ms=math.fsum(lat) / n,
    )


def group(results: Iterable[TransactionResult]) -> dict[tuple[str, str], list[TransactionResult]]:
    """Results grouped by (version, transaction), in input order."""
    out: dict[tuple[str, str], list[TransactionResult]] = defaultdict(list)
    for r in results:
        out[(r.version, r.transaction)].append(r)
    return dict(out)


def summarize(results: Iterable[TransactionResult]) -> dict[tuple[str, str], Stats]:
    """Stats keyed by (version, transaction)."""
    return {key: stats_of(rs) for key, rs in group(results).items()}


def summarize_version(results: Iterable[TransactionResult], version: str) -> Stats:
    """Stats of one version across all its transactions."""
    return stats_of([r for r in results if r.version == version])
