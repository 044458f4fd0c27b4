"""The Router protocol: how a rollout moves traffic between stable and canary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from canary.errors import RouterError


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


def check_weight(weight: int) -> int:
    """``weight`` as an int in 0..100; RouterError otherwise (a bad step must never move traffic)."""
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
        raise RouterError(f"weight must be an integer from 0 to 100, got {weight!r}")
    return weight


def host_port(url: str, what: str = "url") -> tuple[str, int]:
    """``(host, port)`` of an http(s) URL, with the scheme's default port; RouterError if none."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RouterError(f"{what} {url!r} is not an http(s) URL or host:port")
    try:
        port = parts.port
    except ValueError:
        raise RouterError(f"{what} {url!r} has an invalid port") from None
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)
