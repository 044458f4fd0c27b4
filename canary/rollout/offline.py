"""Acting from memory while Redis is away: what this process steers, and its watchdog.

Each coordinator task remembers the rollout it touched (config, weight, step), so that when
Redis, which holds the records, stays unreachable past CANARY_REDIS_DEADLINE, the process can
still send each rollout's traffic to stable through its router; once Redis answers again, the
records are marked failed with the reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from canary.rollout.config import RolloutConfig
from canary.rollout.context import Context, route_context, router_for
from canary.rollout.record import RolloutRecord
from canary.rollout.windows import STRAGGLER_GRACE_S
from canary.store.retry import UNREACHABLE

log = logging.getLogger(__name__)

# Rollouts this process coordinated lately, kept so that it can still send their traffic to
# stable while Redis, which holds their records, is unreachable (see rollback_offline).
RECENT_KEPT = 256


@dataclass
class Memory:
    """What rolling a rollout back needs, without its record."""

    id: str
    service: str
    config: RolloutConfig
    step: int
    weight: int
    trust_until: float


_recent: dict[str, Memory] = {}
_lock = threading.Lock()


def remember(record: RolloutRecord) -> None:
    """Keep what rolling ``record`` back needs (a finished rollout is forgotten instead)."""
    with _lock:
        _recent.pop(record.id, None)
        if record.final:
            return
        # Another coordinator may have finished the rollout since (even promoted it), so a
        # memory is trusted only for about a step: a running rollout is seen once per step.
        interval = float(record.window_interval or record.config.schedule.step_interval)
        _recent[record.id] = Memory(
            id=record.id,
            service=record.service,
            config=record.config,
            step=record.step,
            weight=record.weight,
            trust_until=time.time() + interval + STRAGGLER_GRACE_S + 120.0,
        )
        while len(_recent) > RECENT_KEPT:
            _recent.pop(next(iter(_recent)))


def forget(rollout_id: str) -> None:
    with _lock:
        _recent.pop(rollout_id, None)


def recent_rollouts() -> list[str]:
    """Ids of the unfinished rollouts this process coordinated lately (newest last)."""
    now = time.time()
    with _lock:
        return [rid for rid, m in _recent.items() if m.trust_until >= now]


def rollback_offline(ctx: Context, rollout_id: str) -> str | None:
    """Send a rollout's traffic to stable from what this process remembers, without Redis.

    Returns None when done, else why it could not; the record is written later by fail_safe.
    """
    with _lock:
        memory = _recent.get(rollout_id)
    if memory is None or memory.trust_until < time.time():
        return "this process has not coordinated the rollout lately"
    try:
        router = router_for(ctx, memory.config.router)
        router.rollback(route_context(memory.id, memory.service, memory.config, memory.step))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    memory.weight = 0
    return None


class RedisGuard:
    """Watches Redis from a coordinator process and fails its rollouts safe when it stays away.

    Started by the first coordinator task; checks every second. Past ``deadline_s()`` without
    an answer, every unfinished rollout this process coordinated gets its traffic sent to
    stable through its router (no Redis needed); once Redis answers, the records are marked
    failed with the reason, and tasks for those rollouts do nothing else.
    """

    def __init__(
        self,
        make_ctx: Callable[[], Context],
        client: Callable[[], redis.Redis],
        deadline_s: Callable[[], float],
        fail_safe: Callable[[Context, str, str], None],
    ) -> None:
        self.pending: dict[str, str] = {}
        self._make_ctx = make_ctx
        self._client = client
        self._deadline_s = deadline_s
        self._fail_safe = fail_safe
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._watch, name="redis-guard", daemon=True)
                self._thread.start()

    def fail_offline(self, rollout_id: str, reason: str) -> None:
        problem = rollback_offline(self._make_ctx(), rollout_id)
        if problem is not None:
            reason += f"; could not send traffic to stable while Redis was away: {problem}"
        log.error("rollout %s fails safe: %s", rollout_id, reason)
        with self._lock:
            self.pending.setdefault(rollout_id, reason)

    def settle(self) -> None:
        """Write the pending fail-safe outcomes (when Redis answers); keep those that failed."""
        with self._lock:
            todo = dict(self.pending)
        for rollout_id, reason in todo.items():
            try:
                self._fail_safe(self._make_ctx(), rollout_id, reason)
            except UNREACHABLE:
                continue
            except Exception:
                log.exception("fail-safe of %s could not run", rollout_id)
            with self._lock:
                self.pending.pop(rollout_id, None)

    def _watch(self) -> None:
        client = self._client()
        client.connection_pool.connection_kwargs.update(socket_timeout=2, socket_connect_timeout=2)
        away_since: float | None = None
        while True:
            time.sleep(1.0)
            try:
                client.ping()
            except redis.RedisError:
                away_since = away_since or time.monotonic()
                if time.monotonic() - away_since >= self._deadline_s():
                    for rollout_id in recent_rollouts():
                        if rollout_id not in self.pending:
                            self.fail_offline(
                                rollout_id,
                                f"Redis unreachable for more than {self._deadline_s():g}s",
                            )
                continue
            away_since = None
            if self.pending:
                self.settle()
