"""The analysis engine's settings (the `analysis:` block): defaults, types and validation."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from canary.errors import ConfigError


@dataclass(frozen=True)
class EngineSettings:
    """The knobs of the engine; every default is meant to be left alone (docs/analysis.md)."""

    alpha: float = 0.02  # chance of rolling back a canary no worse than tolerated, per rollout
    check_interval_s: float = 5.0  # how often interim checks run (live and in replay)
    restart_s: float = 60.0  # a fresh test starts every this many seconds (late onsets)
    max_restarts: int = 30
    restart_share: float = 0.5  # of the evidence's prior weight, on the restarted tests
    min_samples: int = 10  # per transaction and version in a step, else "too little evidence"
    min_window_n: int = 30  # runs per version before a normal-approximation test may count
    max_holds: int = 3
    on_max_holds: Literal["rollback", "increase"] = "rollback"
    suspect_fraction: float = 0.5  # hold when a test is this far (log scale) to rejection
    health_window_s: float = 30.0
    health_alpha: float = 0.001
    forecast: bool = True
    forecast_bucket_s: float = 15.0
    forecast_horizon_s: float = 240.0
    forecast_min_buckets: int = 8
    forecast_window: int = 24
    predictive_probability: float = 0.9
    trend_t: float = 2.5
    forecast_tolerance: bool = True  # also forecast the latency ratio against the tolerance
    tolerance_horizon_s: float = 120.0
    tolerance_trend_z: float = 4.5
    pooled_alpha_share: float = 0.7  # of alpha, on the tests pooled over all transactions
    tau_error: float = 0.02  # effect sizes the mixtures are tuned for: 2 pp of errors,
    tau_latency: float = 0.2  # 20% of latency (log scale)
    latency_floor_sd: float = 0.02
    # "off": a step end never holds only because a window's estimate is beyond the tolerance;
    # "estimate" holds then (Kayenta-like caution that, through max_holds, rolls back about half
    # of the canaries that are worse than stable but within tolerance: docs/analysis.md).
    lean_rule: Literal["off", "estimate", "bound"] = "off"
    # A new canary's first seconds (caches, JIT, connection pools) are not a regression. Before
    # t0 + warmup_s its latency is judged against a decaying allowance instead of left out: it
    # may be up to 1 + warmup_amplitude times as slow (on top of the tolerance), the allowance
    # decaying with time constant warmup_tau_s; evidence beyond it counts at once, in
    # warmup_bucket_s buckets, with warmup_alpha_share of alpha. Its errors are left out of
    # the tests for warmup_errors_s only (a short blip). Defaults from data: docs/analysis.md.
    warmup_s: float = 45.0
    warmup_amplitude: float = 1.1
    warmup_tau_s: float = 20.0
    warmup_hold_s: float = 20.0  # the allowance stays at its largest this long before decaying
    warmup_bucket_s: float = 5.0
    warmup_errors_s: float = 20.0
    warmup_alpha_share: float = 0.2
    # Results within a version are not independent (latency wanders): the tests add a wander
    # variance to every canary-minus-stable difference, twice stable's own spread between
    # batch_s batches (in the rollout and in its history), at least wander_prior_pct and at
    # most max_wander_pct (sd of the difference). A larger swing is the canary's, not noise.
    batch_s: float = 60.0
    max_wander_pct: float = 8.0
    wander_prior_pct: float = 1.0
    # A stable whose runs fail this often in a step is no baseline: hold, alert, never move.
    stable_unhealthy_rate: float = 0.5
    # Holds for too few runs only (low volume) before the fail-safe: the step grows instead.
    max_evidence_holds: int = 20
    # Forecast latency against the canary's weight (saturation), not only against time.
    forecast_weight: bool = True
    # An absolute objective's breach is the canary's only when stable's runs in the same
    # interval rule out, at this p, that stable fails (or is slow) as often: a shared incident
    # whose failures fell in the canary's runs is held and alerted on, not rolled back.
    shared_rule_out_p: float = 0.001
    # The wander variance of a difference is also measured on the difference itself, per batch
    # (canary minus stable: a shift of both versions cancels), shrunk toward the stable-based
    # value as if that were paired_wander_prior_batches batches, and the smaller is used.
    paired_wander: bool = True
    paired_wander_prior_batches: float = 4.0
    # The errors comparison's variance is taken at the null's boundary (both rates fitted under
    # "canary - stable = the tolerance", a score test) rather than from the observed rates,
    # which count a worse canary's excess failures as noise too (docs/analysis.md).
    error_null_variance: bool = True
    # A latency test that held a step as "not yet conclusive" keeps holding the weight until its
    # evidence falls back below suspect_release_fraction of the rejection bar (log scale): a
    # canary that looks slower must not slip through between two holds (docs/analysis.md).
    suspect_release_fraction: float = 0.25
    # The suspect bar of the latency and tail tests (suspect_fraction for the others): lower,
    # as their evidence is bounded by the wander allowance; with the memory above, a steady
    # regression held there reaches the fail-safe (0.4 from the bench: docs/analysis.md).
    latency_suspect_fraction: float = 0.4

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> EngineSettings:
        """Missing keys take defaults; unknown keys and bad values are a ConfigError."""
        d = dict(d or {})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(
                f"analysis: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        kw: dict[str, Any] = {}
        for name, value in d.items():
            default = getattr(cls, name)
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise ConfigError(f"analysis.{name}: must be true or false")
                kw[name] = value
            elif isinstance(default, int):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ConfigError(f"analysis.{name}: must be an integer")
                kw[name] = value
            elif isinstance(default, float):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ConfigError(f"analysis.{name}: must be a number")
                kw[name] = float(value)
            else:
                kw[name] = value
        settings = cls(**kw)
        settings.validate()
        return settings

    def validate(self) -> None:
        problems = []
        if not 0.0 < self.alpha < 0.5:
            problems.append("alpha: must be in (0, 0.5)")
        for name in ("check_interval_s", "restart_s", "health_window_s", "forecast_bucket_s"):
            if getattr(self, name) <= 0:
                problems.append(f"{name}: must be > 0")
        if self.forecast_horizon_s < 0:
            problems.append("forecast_horizon_s: must be >= 0")
        for name in ("max_restarts", "max_holds"):
            if getattr(self, name) < 0:
                problems.append(f"{name}: must be >= 0")
        for name in ("min_samples", "min_window_n"):
            if getattr(self, name) < 1:
                problems.append(f"{name}: must be >= 1")
        if self.forecast_min_buckets < 4 or self.forecast_window < self.forecast_min_buckets:
            problems.append("forecast_min_buckets: must be >= 4 and <= forecast_window")
        if self.lean_rule not in ("off", "estimate", "bound"):
            problems.append("lean_rule: must be off, estimate or bound")
        if not 0.0 <= self.pooled_alpha_share < 1.0:
            problems.append("pooled_alpha_share: must be in [0, 1)")
        if self.tolerance_horizon_s < 0:
            problems.append("tolerance_horizon_s: must be >= 0")
        if self.on_max_holds not in ("rollback", "increase"):
            problems.append("on_max_holds: must be rollback or increase")
        if not 0.0 < self.restart_share < 1.0:
            problems.append("restart_share: must be in (0, 1)")
        if not 0.0 < self.suspect_fraction <= 1.0:
            problems.append("suspect_fraction: must be in (0, 1]")
        if not 0.0 < self.latency_suspect_fraction <= 1.0:
            problems.append("latency_suspect_fraction: must be in (0, 1]")
        if not 0.0 <= self.suspect_release_fraction <= self.latency_suspect_fraction:
            problems.append("suspect_release_fraction: must be in [0, latency_suspect_fraction]")
        if not 0.5 <= self.predictive_probability < 1.0:
            problems.append("predictive_probability: must be in [0.5, 1)")
        if not 0.0 < self.health_alpha < 0.5:
            problems.append("health_alpha: must be in (0, 0.5)")
        for name in (
            "tau_error",
            "tau_latency",
            "latency_floor_sd",
            "trend_t",
            "tolerance_trend_z",
        ):
            if getattr(self, name) <= 0:
                problems.append(f"{name}: must be > 0")
        if self.warmup_bucket_s <= 0:
            problems.append("warmup_bucket_s: must be > 0")
        if not 0.0 <= self.warmup_alpha_share < 1.0:
            problems.append("warmup_alpha_share: must be in [0, 1)")
        for name in (
            "warmup_s",
            "warmup_amplitude",
            "warmup_tau_s",
            "warmup_hold_s",
            "warmup_errors_s",
            "max_wander_pct",
            "wander_prior_pct",
            "paired_wander_prior_batches",
        ):
            if getattr(self, name) < 0:
                problems.append(f"{name}: must be >= 0")
        if self.batch_s < self.forecast_bucket_s:
            problems.append("batch_s: must be >= forecast_bucket_s")
        if not 0.0 < self.stable_unhealthy_rate <= 1.0:
            problems.append("stable_unhealthy_rate: must be in (0, 1]")
        if not 0.0 < self.shared_rule_out_p < 1.0:
            problems.append("shared_rule_out_p: must be in (0, 1)")
        if self.max_evidence_holds < 0:
            problems.append("max_evidence_holds: must be >= 0")
        if problems:
            raise ConfigError("\n".join(f"analysis.{p}" for p in problems))
