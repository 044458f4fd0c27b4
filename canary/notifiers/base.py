"""The Notifier protocol and the Alert every channel receives."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

AlertKind = Literal[
    "rollback", "promotion", "error_budget", "predicted_breach", "stuck", "failure", "starved"
]


@dataclass(frozen=True, slots=True)
class Alert:
    """One thing operators should hear about, with the numbers behind it."""

    kind: AlertKind
    rollout_id: str
    service: str
    stable_version: str | None
    canary_version: str | None
    weight: int
    summary: str
    reasons: list[str] = field(default_factory=list)
    severity: Literal["info", "warning", "critical"] = "warning"
    # True when the condition is over (Alertmanager then gets an endsAt and closes the alert).
    resolved: bool = False

    @property
    def dedupe_key(self) -> str:
        return f"{self.rollout_id}:{self.kind}" + (":resolved" if self.resolved else "")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Notifier(Protocol):
    """Delivers alerts; raises NotifierError when the channel cannot be reached."""

    name: str

    def send(self, alert: Alert) -> None: ...
