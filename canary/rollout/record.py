"""The typed rollout record: the parsed config, the schedule, where the rollout is, and its end."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from canary.analysis.slo import SLO
from canary.rollout import state as st
from canary.rollout.config import RolloutConfig

# Kept in memory only, never written with the record.
_TRANSIENT = frozenset({"events_after_save"})


@dataclass
class RolloutRecord:
    """One rollout as the controller keeps it in the store (JSON via to_dict / from_dict).

    The engine's state is not here: it has its own key (Store.load_engine), so that whoever
    reads the record (a probe batch, ``rollout status``) does not decode the evidence too.
    """

    id: str
    name: str
    service: str
    config: RolloutConfig
    transactions: list[dict[str, Any]]
    slo: SLO
    weights: list[int]
    pauses: dict[str, float | None] = field(default_factory=dict)
    baseline: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0
    state: str = "running"
    outcome: str | None = None
    step: int = 0
    attempt: int = 0
    weight: int = 0
    window: str | None = None
    window_started_at: float | None = None
    window_interval: float | None = None
    expected_batches: list[str] = field(default_factory=list)
    judged: str | None = None
    pause_until: float | None = None
    canary_failures: int = 0
    alerts_sent: list[str] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    fence: int = 0
    finished_at: float | None = None
    reasons: list[str] | None = None
    predictive: bool | None = None
    # The rollout this one replaced (rollout start --replace), and the one that replaced it.
    replaces: str | None = None
    replaced_by: str | None = None
    # The ended rollout this one starts again (rollout retry), with the same configuration.
    retry_of: str | None = None
    # Keys written by a newer canary that this one does not know: kept, so they survive a save.
    extra: dict[str, Any] = field(default_factory=dict)
    # Not stored: state events to append once the save is accepted (outcome.save).
    events_after_save: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def final(self) -> bool:
        return st.is_final(self.state)

    @property
    def transaction_names(self) -> list[str]:
        return [t["transaction_name"] for t in self.transactions]

    @property
    def max_weight(self) -> int:
        return self.weights[-1]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON, the shape the edges (cli, exporter, report) read."""
        out: dict[str, Any] = dict(self.extra)
        for f in dataclasses.fields(self):
            if f.name in _TRANSIENT or f.name == "extra":
                continue
            value = getattr(self, f.name)
            if f.name == "config":
                value = self.config.model_dump(mode="json")
            elif f.name == "slo":
                value = self.slo.to_dict()
            elif value is None and f.name in _OMITTED_WHEN_NONE:
                continue
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RolloutRecord:
        known = {f.name for f in dataclasses.fields(cls)} - _TRANSIENT - {"extra"}
        kw: dict[str, Any] = {k: v for k, v in d.items() if k in known}
        kw["config"] = RolloutConfig.model_validate(d["config"])
        kw["slo"] = SLO.from_dict(d.get("slo"))
        kw["expected_batches"] = list(d.get("expected_batches") or [])
        kw["alerts_sent"] = list(d.get("alerts_sent") or [])
        kw["decisions"] = list(d.get("decisions") or [])
        kw["pauses"] = dict(d.get("pauses") or {})
        kw["fence"] = int(d.get("fence") or 0)
        kw["canary_failures"] = int(d.get("canary_failures") or 0)
        # "engine" is the state of records written before it had its own key.
        kw["extra"] = {k: v for k, v in d.items() if k not in known and k != "engine"}
        return cls(**kw)


# Written only once they mean something, as records always were (readers test for the key).
_OMITTED_WHEN_NONE = frozenset(
    {
        "window_started_at",
        "window_interval",
        "judged",
        "pause_until",
        "finished_at",
        "reasons",
        "predictive",
        "replaces",
        "replaced_by",
        "retry_of",
    }
)
