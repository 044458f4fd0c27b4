"""The Router protocol: how a rollout moves traffic between stable and canary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class RouteContext:
    """What a router may need to know about the rollout (versions, images, the step)."""

    rollout_id: str
    service: str
    stable: dict[str, Any]
    canary: dict[str, Any]
    step: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Router(Protocol):
    """Moves traffic. Every method raises RouterError when it cannot do what it is asked."""

    name: str

    def set_weight(self, weight: int, ctx: RouteContext) -> None:
        """Send ``weight`` percent of traffic to the canary, the rest to stable."""

    def verify_weight(self, weight: int, ctx: RouteContext) -> bool | None:
        """True when the live weight is ``weight``, False when not, None when it cannot tell."""

    def promote(self, ctx: RouteContext) -> None:
        """Make the canary take all traffic for good."""

    def rollback(self, ctx: RouteContext) -> None:
        """Send all traffic back to stable (and undo whatever set_weight deployed)."""
