"""Rollout states and the only transitions allowed between them."""

from __future__ import annotations

from typing import Literal

from canary.errors import CanaryError

State = Literal["running", "paused", "promoted", "rolled_back", "aborted", "failed"]

FINAL: frozenset[str] = frozenset({"promoted", "rolled_back", "aborted", "failed"})

_ALLOWED: dict[str, frozenset[str]] = {
    "running": frozenset({"running", "paused", "promoted", "rolled_back", "aborted", "failed"}),
    "paused": frozenset({"running", "paused", "promoted", "rolled_back", "aborted", "failed"}),
}

# What a finished rollout did to traffic: everything but a promotion ends on stable.
OUTCOME: dict[str, str] = {
    "promoted": "promoted",
    "rolled_back": "rolled_back",
    "aborted": "rolled_back",
    "failed": "rolled_back",
}


class IllegalTransition(CanaryError):
    """A state change the state machine does not allow (a bug, not a user error)."""


def transition(current: str, new: str) -> str:
    """Return ``new`` if the move is legal, else raise."""
    if new not in _ALLOWED.get(current, frozenset()):
        raise IllegalTransition(f"a rollout cannot go from {current} to {new}")
    return new


def is_final(state: str) -> bool:
    return state in FINAL
