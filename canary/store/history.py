"""The store's history part: stable results across rollouts and the monitors of stable versions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from canary.errors import StoreError
from canary.probing.result import TransactionResult
from canary.store.base import StoreBase, mapped, parse_results

HISTORY_KEPT = 5_000
MONITORS_KEPT = 1_000


class HistoryStore(StoreBase):
    """Per-service stable history (the forecasts' input) and continuous monitors."""

    # --- stable history across rollouts ----------------------------------------------------

    def history_values(
        self, service: str, results: Sequence[TransactionResult]
    ) -> dict[str, list[str]]:
        """The history key of each transaction, and its results as the history keeps them."""
        by_key: dict[str, list[str]] = {}
        for res in results:
            key = self.keys.history(service, res.transaction)
            by_key.setdefault(key, []).append(json.dumps(res.to_dict(with_steps=False)))
        return by_key

    def add_history(self, service: str, results: Sequence[TransactionResult]) -> None:
        # One RPUSH per transaction, not per result: a step end's few hundred results were as
        # many commands, a quarter of an analysis's time (scripts/bench-scale).
        by_key = self.history_values(service, results)
        if not by_key:
            return
        pipe = self.r.pipeline()
        for key, values in by_key.items():
            pipe.rpush(key, *values)
            pipe.ltrim(key, -HISTORY_KEPT, -1)
        with mapped(f"cannot add to the history of {service}"):
            pipe.execute()

    def history_size(self, service: str, transaction: str) -> int:
        """How many results the service's history holds for a transaction."""
        with mapped(f"cannot read the history of {service}"):
            return int(self.r.llen(self.keys.history(service, transaction)))

    def history(
        self, service: str, transaction: str, *, since: float | None = None
    ) -> list[TransactionResult]:
        with mapped(f"cannot read the history of {service}"):
            raws = self.r.lrange(self.keys.history(service, transaction), 0, -1)
        got = parse_results(raws)
        return [r for r in got if since is None or r.t >= since]

    # --- continuous monitors of stable versions (canary/monitor.py) ---------------------------

    def save_monitor(self, record: dict[str, Any]) -> bool:
        """Add or replace the monitor of ``record["service"]``; True when it is new."""
        service = record["service"]
        key = self.keys.monitors()
        with mapped(f"cannot save the monitor of {service}"):
            if not self.r.hexists(key, service) and self.r.hlen(key) >= MONITORS_KEPT:
                raise StoreError(f"there are already {MONITORS_KEPT} monitors; remove one first")
            return bool(self.r.hset(key, service, json.dumps(record)))

    def load_monitor(self, service: str) -> dict[str, Any] | None:
        with mapped(f"cannot read the monitor of {service}"):
            raw = self.r.hget(self.keys.monitors(), service)
        return json.loads(raw) if raw else None

    def list_monitors(self) -> list[dict[str, Any]]:
        """Every monitor, by service name."""
        with mapped("cannot list monitors"):
            got = self.r.hgetall(self.keys.monitors())
        return [json.loads(got[name]) for name in sorted(got)]

    def remove_monitor(self, service: str) -> bool:
        """Stop monitoring ``service`` (its history stays); False when it had no monitor."""
        with mapped(f"cannot remove the monitor of {service}"):
            pipe = self.r.pipeline()
            pipe.hdel(self.keys.monitors(), service)
            pipe.delete(self.keys.monitor_tick(service))
            removed, _ = pipe.execute()
        return bool(removed)

    def claim_monitor_tick(self, service: str, interval_s: float) -> float | None:
        """Atomically take the monitor's next tick if it is due (Redis time); None when not.

        Exactly one caller gets each tick, however many beats or workers ask at once.
        """
        ttl = int(2 * interval_s) + 60
        with mapped(f"cannot claim the tick of {service}"):
            got = self.scripts["claim_tick"](
                keys=[self.keys.monitor_tick(service)], args=[interval_s, ttl]
            )
        return float(got) if got is not None else None
