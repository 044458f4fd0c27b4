"""The one ``Store`` facade over Redis, composed of its parts, and ``connect`` for a client.

The parts each keep one kind of data: rollouts.py (records, lock, events, commands), windows.py
(batches and results), history.py (stable history and monitors). Every Redis failure leaves the
store as a StoreError.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from canary.probing.result import TransactionResult
from canary.rollout.record import RolloutRecord
from canary.settings import load_settings
from canary.store.base import mapped
from canary.store.history import HISTORY_KEPT, MONITORS_KEPT, HistoryStore
from canary.store.retention import FINISHED_TTL_S
from canary.store.rollouts import (
    EVENTS_MAXLEN,
    ROLLOUTS_KEPT,
    Command,
    RolloutStore,
    engine_state,
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
    "Look",
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


@dataclass(frozen=True)
class Look:
    """What an interim check reads: the window's seal, the record, the judge's state, new pushes."""

    sealed: bool
    record: RolloutRecord | None
    engine: dict[str, Any] | None
    pushed: list[TransactionResult]


class Store(RolloutStore, WindowStore, HistoryStore):
    """All of canary's Redis reads and writes, behind names rather than key strings."""

    @classmethod
    def from_url(cls, url: str | None = None) -> Store:
        return cls(connect(url))

    def look(self, rollout_id: str, window: str, pushed_from: int) -> Look:
        """Everything an interim check reads, in one round trip (``interim_since`` for pushes).

        A check runs every few seconds for every running rollout; its separate reads were as
        many round trips, each a wait behind everything else Redis does at a busy moment.
        """
        with mapped(f"cannot read rollout {rollout_id} for a check of {window}"):
            pipe = self.r.pipeline(transaction=False)
            pipe.exists(self.keys.sealed(rollout_id, window))
            pipe.get(self.keys.rollout(rollout_id))
            pipe.get(self.keys.engine(rollout_id))
            pipe.lrange(self.keys.interim_log(rollout_id, window), pushed_from, -1)
            sealed, raw, engine, pushed = pipe.execute()
        if sealed or raw is None:
            return Look(bool(sealed), None, None, [])
        doc = json.loads(raw)
        return Look(
            False,
            RolloutRecord.from_dict(doc),
            engine_state(engine, doc),
            [TransactionResult.from_dict(json.loads(p)) for p in pushed],
        )
