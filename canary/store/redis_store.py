"""The one ``Store`` facade over Redis, composed of its parts, and ``connect`` for a client.

The parts each keep one kind of data: rollouts.py (records, lock, events, commands), windows.py
(batches and results), history.py (stable history and monitors). Every Redis failure leaves the
store as a StoreError.
"""

from __future__ import annotations

import redis

from canary.settings import load_settings
from canary.store.history import HISTORY_KEPT, MONITORS_KEPT, HistoryStore
from canary.store.rollouts import (
    EVENTS_MAXLEN,
    FINISHED_TTL_S,
    ROLLOUTS_KEPT,
    Command,
    RolloutStore,
)
from canary.store.windows import (
    INTERIM_TTL_S,
    RESULTS_TTL_S,
    WindowStore,
)

__all__ = [
    "EVENTS_MAXLEN",
    "FINISHED_TTL_S",
    "HISTORY_KEPT",
    "INTERIM_TTL_S",
    "MONITORS_KEPT",
    "RESULTS_TTL_S",
    "ROLLOUTS_KEPT",
    "Command",
    "Store",
    "connect",
]


def connect(url: str | None = None) -> redis.Redis:
    """A client for ``url`` (default: CANARY_REDIS_URL), answering str, with short timeouts."""
    url = url or load_settings().redis_url or "redis://127.0.0.1:6379/0"
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=30,
    )


class Store(RolloutStore, WindowStore, HistoryStore):
    """All of canary's Redis reads and writes, behind names rather than key strings."""

    @classmethod
    def from_url(cls, url: str | None = None) -> Store:
        return cls(connect(url))
