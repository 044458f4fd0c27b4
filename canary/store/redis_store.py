"""The one ``Store`` facade over Redis, composed of its parts, and ``connect`` for a client.

The parts each keep one kind of data: rollouts.py (records, lock, events, commands), windows.py
(batches and results), history.py (stable history and monitors). Every Redis failure leaves the
store as a StoreError.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from canary.probing.result import TransactionResult
from canary.rollout.record import RolloutRecord
from canary.settings import load_settings
from canary.store.base import mapped, parse_results
from canary.store.history import HISTORY_KEPT, MONITORS_KEPT, HistoryStore
from canary.store.retention import FINISHED_TTL_S
from canary.store.rollouts import (
    EVENTS_MAXLEN,
    ROLLOUTS_KEPT,
    Command,
    EngineRead,
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
    "EngineRead",
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
    """What an interim check reads: the window's seal, the record, the judge's state, new pushes.

    ``etag`` names the saved judge state (the fence of the save that wrote it; '' for none, or
    one saved before etags);
    ``unchanged``: it is the one the caller keeps, so ``engine`` was not sent (None).
    """

    sealed: bool
    record: RolloutRecord | None
    engine: dict[str, Any] | None
    pushed: list[TransactionResult]
    etag: str = ""
    unchanged: bool = False


class Store(RolloutStore, WindowStore, HistoryStore):
    """All of canary's Redis reads and writes, behind names rather than key strings."""

    @classmethod
    def from_url(cls, url: str | None = None) -> Store:
        return cls(connect(url))

    def look(self, rollout_id: str, window: str, pushed_from: int, etag: str | None = None) -> Look:
        """Everything an interim check reads, in one round trip (``interim_since`` for pushes).

        A check runs every few seconds for every running rollout; its separate reads were as
        many round trips, each a wait behind everything else Redis does at a busy moment. The
        judge's state is sent only when its etag is not ``etag``, that of the copy the caller
        keeps (None: it keeps none).
        """
        with mapped(f"cannot read rollout {rollout_id} for a check of {window}"):
            got = self.scripts["look"](
                keys=[
                    self.keys.sealed(rollout_id, window),
                    self.keys.rollout(rollout_id),
                    self.keys.engine(rollout_id),
                    self.keys.engine_etag(rollout_id),
                    self.keys.interim_log(rollout_id, window),
                ],
                args=[pushed_from, etag or "", "0" if etag is None else "1"],
            )
        if len(got) < 4:
            return Look(bool(got[0]), None, None, [])
        raw, saved, state, pushed = got[1], str(got[2]), got[3], got[4:]
        doc = json.loads(raw)
        unchanged = etag is not None and saved == etag
        return Look(
            False,
            RolloutRecord.from_dict(doc),
            None if unchanged else engine_state(state or None, doc),
            parse_results(pushed),
            etag=saved,
            unchanged=unchanged,
        )

    def judge_window(
        self,
        rollout_id: str,
        window: str,
        entry: dict[str, Any],
        service: str,
        stable: Sequence[TransactionResult],
    ) -> dict[str, Any] | None:
        """Tell a window's decision once: keep it, append its event, add ``stable`` to the
        service's history, in one step; returns the decision told before, if one was.

        A window sealed but not saved as judged is judged again when its task is handed out
        again (controller.analyze); the earlier decision is then what it applies, and neither
        its event nor its stable results are written a second time.
        """
        history = self.history_values(service, stable)
        args: list[Any] = [
            self.results_ttl_s,
            json.dumps(entry),
            f"{time.time():.3f}",
            EVENTS_MAXLEN,
            HISTORY_KEPT,
        ]
        for values in history.values():
            args += [len(values), *values]
        with mapped(f"cannot record the decision on {window} of {rollout_id}"):
            got = self.scripts["judge_window"](
                keys=[
                    self.keys.verdict(rollout_id, window),
                    self.keys.events(rollout_id),
                    *history,
                ],
                args=args,
            )
        if not got:
            return None
        first: dict[str, Any] = json.loads(got)
        return first
