"""The service-level objectives and tolerances a canary is judged against."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from canary.errors import ConfigError


@dataclass(frozen=True)
class SLO:
    """Names follow the replay format's ``slo`` object; every field has a default.

    success_threshold: percent of transactions that must succeed.
    error_budget: failed canary transactions tolerated over the rollout before alerting.
    latency_p95_ms: absolute p95 objective for one transaction run, or None for none.
    max_latency_increase_pct: how much higher the canary's p95 may be than stable's.
    max_error_rate_increase_pp: how many percentage points more errors than stable are tolerated.
    rollback_on_error_budget: roll back (not only alert) once the error budget is spent.
    """

    success_threshold: float = 99.0
    error_budget: int = 5
    latency_p95_ms: float | None = None
    max_latency_increase_pct: float = 10.0
    max_error_rate_increase_pp: float = 0.5
    rollback_on_error_budget: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> SLO:
        """Build from a plain dict; missing keys take defaults, unknown keys are an error."""
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(
                f"slo: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        kw: dict[str, Any] = {}
        if "success_threshold" in d:
            kw["success_threshold"] = float(d["success_threshold"])
        if "error_budget" in d:
            kw["error_budget"] = int(d["error_budget"])
        if d.get("latency_p95_ms") is not None:
            kw["latency_p95_ms"] = float(d["latency_p95_ms"])
        if "max_latency_increase_pct" in d:
            kw["max_latency_increase_pct"] = float(d["max_latency_increase_pct"])
        if "max_error_rate_increase_pp" in d:
            kw["max_error_rate_increase_pp"] = float(d["max_error_rate_increase_pp"])
        if "rollback_on_error_budget" in d:
            kw["rollback_on_error_budget"] = bool(d["rollback_on_error_budget"])
        slo = cls(**kw)
        slo.validate()
        return slo

    def validate(self) -> None:
        """Raise ConfigError listing every out-of-range field."""
        problems = []
        if not 0.0 < self.success_threshold <= 100.0:
            problems.append("success_threshold: must be in (0, 100]")
        if self.error_budget < 0:
            problems.append("error_budget: must be >= 0")
        if self.latency_p95_ms is not None and self.latency_p95_ms <= 0:
            problems.append("latency_p95_ms: must be > 0")
        if self.max_latency_increase_pct < 0:
            problems.append("max_latency_increase_pct: must be >= 0")
        if not 0.0 <= self.max_error_rate_increase_pp < 100.0:
            problems.append("max_error_rate_increase_pp: must be in [0, 100)")
        if problems:
            raise ConfigError("\n".join(f"slo.{p}" for p in problems))
