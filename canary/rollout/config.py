"""The rollout configuration language: versions, schedule, probes, SLOs, router, notifiers."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from canary.analysis.slo import SLO
from canary.documents import Document, load_document, parse_model
from canary.errors import ConfigError, Problem

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
# RFC 9110 token: what a header field name may be made of.
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# The longest pause a schedule may hold: past it, an operator should have said something.
MAX_PAUSE_S = 7 * 24 * 3600.0


def parse_duration(value: Any) -> float:
    """``30``, ``"30s"``, ``"2m"``, ``"500ms"`` → seconds."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 30, '30s', '2m' or '500ms'")
    if isinstance(value, int | float):
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a duration such as 30, '30s', '2m' or '500ms'")
    return float(m.group(1)) * _UNITS[m.group(2)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VersionSpec(_Strict):
    """One version of the service: where it answers and what it is."""

    url: str = Field(description="Base URL that synthetic transactions are sent to.")
    version: str | None = Field(default=None, description="Version label, e.g. 1.4.2.")
    image: str | None = Field(
        default=None, description="Container image, passed to routers that deploy."
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra headers for every probe."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^\s/]+", v):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v.rstrip("/")

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        # A CR or LF in a header would let a probe write a header (or a request) of its own.
        for name, value in v.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(
                    f"header name {name!r} is not a token (letters, digits and !#$%&'*+-.^_`|~; "
                    "no spaces or colons)"
                )
            if any(c in value for c in "\r\n\0"):
                raise ValueError(f"header {name!r}: the value must not contain CR, LF or NUL")
        return v


class PauseSpec(_Strict):
    """How long a pause lasts; without a duration it lasts until an operator resumes or promotes."""

    duration: float | None = Field(
        default=None, description="'60s', '10m'; omit to wait for an operator."
    )

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float | None:
        if v is None:
            return None
        seconds = parse_duration(v)
        if not 0 < seconds <= MAX_PAUSE_S:
            raise ValueError(
                "must be more than 0 and at most 7 days (omit it to wait for an operator)"
            )
        return seconds


class Pause(_Strict):
    """A schedule entry that pauses between traffic steps (Argo Rollouts' ``pause``)."""

    pause: PauseSpec


class Schedule(_Strict):
    """How the canary's traffic weight grows, and how long each step lasts."""

    initial_weight: int = Field(default=5, ge=1, le=100)
    step_weight: int = Field(default=5, ge=1, le=100)
    max_weight: int = Field(default=100, ge=1, le=100)
    steps: list[int | Pause] | None = Field(
        default=None,
        description="Explicit weights and pauses, e.g. [5, 10, {pause: {duration: 10m}}, 50, {pause: {}}, 100].",
    )
    step_interval: float = Field(
        default=60.0, description="Seconds (or '30s', '2m') each step is probed."
    )
    isolated_check: bool = Field(
        default=True, description="Probe the canary at weight 0 before any traffic moves."
    )

    @field_validator("step_interval", mode="before")
    @classmethod
    def _interval(cls, v: Any) -> float:
        seconds = parse_duration(v)
        if not 1.0 <= seconds <= 86_400:
            raise ValueError("must be between 1s and 24h")
        return seconds

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[int | Pause] | None) -> list[int | Pause] | None:
        if v is None:
            return v
        weights = [w for w in v if isinstance(w, int)]
        if not weights:
            raise ValueError("must list at least one weight")
        if any(not 1 <= w <= 100 for w in weights):
            raise ValueError("every weight must be between 1 and 100")
        if any(b <= a for a, b in itertools.pairwise(weights)):
            raise ValueError("weights must increase")
        if isinstance(v[-1], Pause):
            raise ValueError("a pause cannot be last: the last weight promotes")
        return v

    @model_validator(mode="after")
    def _span(self) -> Schedule:
        if self.steps is None and self.initial_weight > self.max_weight:
            raise ValueError(
                f"initial_weight {self.initial_weight} must be <= max_weight {self.max_weight}"
            )
        return self

    def weights(self) -> list[int]:
        """The canary's weight at each traffic step (the isolated check, weight 0, not included)."""
        if self.steps is not None:
            return [w for w in self.steps if isinstance(w, int)]
        out = [self.initial_weight]
        while out[-1] < self.max_weight:
            out.append(min(out[-1] + self.step_weight, self.max_weight))
        return out

    def pauses(self) -> dict[int, float | None]:
        """Pauses keyed by the traffic step they follow (-1: before the first one).

        The value is the pause's duration in seconds, or None to wait for an operator.
        """
        out: dict[int, float | None] = {}
        index = -1
        for entry in self.steps or []:
            if isinstance(entry, int):
                index += 1
            else:
                out[index] = entry.pause.duration
        return out


class Probes(_Strict):
    """How many synthetic transactions each step runs, and from where."""

    per_step: int = Field(
        default=40, ge=1, le=100_000, description="Runs per version per transaction per step."
    )
    batch_size: int = Field(default=20, ge=1, le=10_000, description="Runs per probe task.")
    concurrency: int = Field(
        default=8, ge=1, le=256, description="Runs in flight inside one probe task."
    )
    environments: list[str] = Field(default_factory=lambda: ["default"], min_length=1)

    @field_validator("environments")
    @classmethod
    def _envs(cls, v: list[str]) -> list[str]:
        for name in v:
            if not _NAME.match(name):
                raise ValueError(
                    f"{name!r} is not a valid environment name (letters, digits, '-', '_', '.')"
                )
        return v


class SLOSpec(_Strict):
    """Service-level objectives and tolerances (the replay format's ``slo`` block)."""

    success_threshold: float | None = Field(default=None, gt=0, le=100)
    error_budget: int | None = Field(default=None, ge=0)
    latency_p95_ms: float | None = Field(default=None, gt=0)
    max_latency_increase_pct: float = Field(default=10.0, ge=0)
    max_error_rate_increase_pp: float = Field(default=0.5, ge=0)
    rollback_on_error_budget: bool = False


class AnalysisSpec(_Strict):
    """Which judge decides, and how long it may wait for evidence."""

    judge: str = "sequential"
    engine: dict[str, Any] = Field(
        default_factory=dict,
        description="Settings of the sequential engine (docs/analysis.md); defaults need no tuning.",
    )
    min_samples: int = Field(default=10, ge=1)
    max_holds: int = Field(default=3, ge=0)
    history_window: float = Field(
        default=3600.0, description="Seconds of stable history used as baseline."
    )
    stuck_after: float | None = Field(
        default=None,
        description="Alert when a running rollout makes no progress this long (default: 3 steps + 30 s).",
    )
    dry_run: bool = Field(
        default=False,
        description="Run the schedule and record what the judge would decide, never rolling back on it.",
    )

    @field_validator("history_window", mode="before")
    @classmethod
    def _window(cls, v: Any) -> float:
        return parse_duration(v)

    @field_validator("stuck_after", mode="before")
    @classmethod
    def _stuck(cls, v: Any) -> float | None:
        return None if v is None else parse_duration(v)


class PluginSpec(BaseModel):
    """A router or notifier: ``type`` picks the implementation, other keys are its settings."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: str

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def _check(self, kind: str, options_of: Any) -> PluginSpec:
        """Check the options against the plugin's own model, so typos fail here, not mid-rollout."""
        from canary.plugins import option_problems

        try:
            model = options_of(self.type)
        except ConfigError as exc:
            raise ValidationError.from_exception_data(
                kind, [_error(("type",), str(exc), self.type)]
            ) from None
        extra = self.options()
        problems = option_problems(model, extra)
        if problems:
            raise ValidationError.from_exception_data(
                kind,
                [
                    InitErrorDetails(type="missing", loc=p.path, input=extra)
                    if p.missing
                    else _error(p.path, p.message, _value(extra, p.path))
                    for p in problems
                ],
            )
        return self


class RouterSpec(PluginSpec):
    """The ``router:`` block: ``type`` and that router's options (canary/routers/)."""

    @model_validator(mode="after")
    def _options(self) -> RouterSpec:
        from canary.routers import router_options

        self._check("router", router_options)
        return self


class NotifierSpec(PluginSpec):
    """One ``notifiers:`` entry: ``type`` and that channel's options (canary/notifiers/)."""

    @model_validator(mode="after")
    def _options(self) -> NotifierSpec:
        from canary.notifiers import notifier_options

        self._check("notifier", notifier_options)
        return self


def _error(loc: tuple[str | int, ...], message: str, value: Any) -> InitErrorDetails:
    # A custom type, not pydantic's extra_forbidden: the message already names the plugin's
    # own options, which the rollout file's schema cannot know.
    return InitErrorDetails(
        type=PydanticCustomError("plugin_option", "{message}", {"message": message}),
        loc=loc,
        input=value,
    )


def _value(data: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


class RolloutConfig(_Strict):
    """A rollout as an operator writes it."""

    name: str = Field(description="Rollout name; the rollout id is derived from it.")
    service: str | None = Field(
        default=None, description="Service name; history is kept per service."
    )
    stable: VersionSpec
    canary: VersionSpec
    transactions: list[str] = Field(
        min_length=1, description="Transaction files, relative to this file."
    )
    schedule: Schedule = Field(default_factory=Schedule)
    probes: Probes = Field(default_factory=Probes)
    slo: SLOSpec = Field(default_factory=SLOSpec)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    router: RouterSpec = Field(default_factory=lambda: RouterSpec(type="noop"))
    notifiers: list[NotifierSpec] = Field(default_factory=lambda: [NotifierSpec(type="log")])

    @field_validator("name", "service")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not _NAME.match(v):
            raise ValueError(f"{v!r} must be 1-63 letters, digits, '-', '_' or '.'")
        return v

    @property
    def service_name(self) -> str:
        return self.service or self.name


def load_rollout(path: str | Path) -> tuple[RolloutConfig, list[dict[str, Any]]]:
    """Load a rollout file and every transaction it names.

    Returns the config and the transactions as plain JSON (what workers receive). Problems in the
    rollout file and in every transaction file are reported together.
    """
    from canary.transactions import load_transaction

    doc = load_document(path)
    config = parse_model(RolloutConfig, doc)
    problems: list[Problem] = []
    problems.extend(_check_plugins(config, doc))
    txs: list[dict[str, Any]] = []
    names: dict[str, int] = {}
    base = Path(path).parent
    for i, rel in enumerate(config.transactions):
        tx_path = base / rel
        if not tx_path.is_file():
            what = "is a directory, not a file" if tx_path.is_dir() else "no such file"
            problems.append(doc.problem(("transactions", i), f"{rel}: {what} ({tx_path})"))
            continue
        try:
            tx = load_transaction(tx_path)
        except ConfigError as exc:
            problems.extend(exc.problems or [doc.problem(("transactions", i), str(exc))])
            continue
        if tx.name in names:
            problems.append(
                doc.problem(
                    ("transactions", i),
                    f"transaction {tx.name!r} is already listed at transactions[{names[tx.name]}]",
                )
            )
        names[tx.name] = i
        txs.append(tx.model_dump(mode="json"))
    if problems:
        raise ConfigError(problems)
    return config, txs


def validate_config(data: Any, name: str = "config") -> RolloutConfig:
    """A rollout config sent as plain JSON (the Celery API), checked like a file.

    Problems are the loader's, naming the field (there is no file, so each is at ``name:1:1``).
    """
    return parse_model(RolloutConfig, Document(name, data))


def _check_plugins(config: RolloutConfig, doc: Document) -> list[Problem]:
    from canary.analysis.judge import JUDGES

    # Router and notifier options are checked by RouterSpec and NotifierSpec themselves.
    out: list[Problem] = []
    from canary.analysis.engine import EngineSettings

    try:
        EngineSettings.from_dict(config.analysis.engine)
    except ConfigError as exc:
        out.append(doc.problem(("analysis", "engine"), str(exc).removeprefix("analysis: ")))
    if config.analysis.judge not in JUDGES:
        out.append(
            doc.problem(
                ("analysis", "judge"),
                f"unknown judge {config.analysis.judge!r}; known: {', '.join(sorted(JUDGES))}",
            )
        )
    return out


def effective_slo(config: RolloutConfig, transactions: list[dict[str, Any]]) -> SLO:
    """The SLO the judge applies: the rollout's, else the strictest of its transactions'."""
    thresholds = [float(t.get("sla_success_threshold") or 99.0) for t in transactions] or [99.0]
    budgets = [
        int(t["error_budget"]) for t in transactions if t.get("error_budget") is not None
    ] or [5]
    s = config.slo
    return SLO(
        success_threshold=s.success_threshold
        if s.success_threshold is not None
        else max(thresholds),
        error_budget=s.error_budget if s.error_budget is not None else min(budgets),
        latency_p95_ms=s.latency_p95_ms,
        max_latency_increase_pct=s.max_latency_increase_pct,
        max_error_rate_increase_pp=s.max_error_rate_increase_pp,
        rollback_on_error_budget=s.rollback_on_error_budget,
    )
