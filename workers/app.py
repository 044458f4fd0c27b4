"""The Celery app: broker and backend from CANARY_REDIS_URL, JSON only, late acks, queue routing."""

from __future__ import annotations

import logging
import os
from typing import Any

import redis
from celery import Celery
from celery.signals import worker_shutdown

from canary.errors import CanaryError
from canary.fleet import PACER
from canary.settings import load_settings

log = logging.getLogger(__name__)
_settings = load_settings()
_url = _settings.redis_url or "redis://127.0.0.1:6379/0"

# How long a task taken by a worker may stay unacknowledged before Redis hands it to another
# worker: the delay before the work of a worker killed with -9 is redone. Re-deliveries of a
# task still running are harmless (batches are claimed, coordinator steps are idempotent), and
# no task waits longer than half of it: countdowns are capped (workers/tasks.py) and a batch's
# re-delivered copy re-checks its claim in a new short task rather than waiting.
DEFAULT_VISIBILITY_TIMEOUT_S = 300.0


def _env_seconds(name: str, default: float, minimum: float) -> float:
    """A duration from the environment: ``default`` when unset, at least ``minimum``."""
    raw = os.environ.get(name, "").strip()
    try:
        return max(minimum, float(raw)) if raw else default
    except ValueError:
        raise CanaryError(f"{name}={raw!r} is not a number of seconds") from None


def visibility_timeout() -> float:
    """CANARY_VISIBILITY_TIMEOUT in seconds (default 300, at least 2)."""
    return _env_seconds("CANARY_VISIBILITY_TIMEOUT", DEFAULT_VISIBILITY_TIMEOUT_S, 2.0)


DEFAULT_MONITOR_TICK_S = 5.0


def monitor_tick_s() -> float:
    """CANARY_MONITOR_TICK_S: how often beat looks for due stable monitors (default 5, >= 0.2)."""
    return _env_seconds("CANARY_MONITOR_TICK_S", DEFAULT_MONITOR_TICK_S, 0.2)


def broker_transport_options() -> dict[str, float]:
    vt = visibility_timeout()
    sweep = max(1.0, min(10.0, vt / 4))
    return {
        "visibility_timeout": vt,
        # Kombu sweeps for overdue tasks every interval * throttle seconds (100 s by default),
        # which would dwarf a short visibility timeout: sweep a few times per timeout instead.
        "unacked_restore_interval": sweep,
        "unacked_restore_throttle": 1,
        # Each sweep holds a lock for milliseconds; a worker killed with -9 while holding it
        # would stop every sweep for kombu's 300 s, so a killed worker's tasks (its batches'
        # takeover) came back after their step was judged. Two sweeps at once are harmless:
        # each message is put back in a transaction on the unacknowledged hash.
        "unacked_mutex_expire": sweep,
        # Without these a publish to a broker that vanished without closing the connection
        # would wait forever, and the coordinator's deadline could never fire.
        "socket_timeout": 30.0,
        "socket_connect_timeout": 5.0,
    }


def _survive_broker_restarts() -> None:
    """Keep a worker alive when Redis restarts under it (kombu 5.x).

    After losing the broker the worker drops its channel; pushing held tasks back (on close) or
    acknowledging a task that finished later then goes through that dead channel, raises
    AttributeError, and the worker exits ("Unrecoverable error"). Those tasks are still listed
    as unacknowledged in Redis, so the visibility sweep re-delivers them, and a re-delivered
    task is harmless (batches are claimed and recorded once, coordinator steps are idempotent).
    """
    from kombu.transport import redis as kombu_redis

    def guarded(name: str) -> None:
        original = getattr(kombu_redis.QoS, name)
        if getattr(original, "_canary_guarded", False):
            return

        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return original(self, *args, **kwargs)
            except (AttributeError, redis.RedisError) as exc:
                log.warning("broker lost: %s left to the visibility sweep (%r)", name, exc)
                if name == "restore_unacked":
                    self._delivered.clear()
                return None

        method._canary_guarded = True  # type: ignore[attr-defined]
        setattr(kombu_redis.QoS, name, method)

    for name in ("restore_unacked", "ack", "reject"):
        guarded(name)


_survive_broker_restarts()

app = Celery("canary", broker=_url, backend=_url, include=["workers.tasks"])
_COMMON = dict(
    # JSON only: no message can make a worker rebuild (and so run) attacker-chosen Python objects.
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_accept_content=["json"],
    # A task is acknowledged after it ran, and re-queued if its worker died; tasks are idempotent.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_track_started=True,
    result_expires=24 * 3600,
    task_default_queue=_settings.control_queue,
    task_routes={
        "canary.probe_batch": {"queue": f"{_settings.probe_queue_prefix}.default"},
        "canary.*": {"queue": _settings.control_queue},
    },
    broker_connection_retry_on_startup=True,
    broker_transport_options=broker_transport_options(),
    # A probe worker keeps running its batches while the broker is briefly away.
    worker_cancel_long_running_tasks_on_connection_loss=False,
    worker_send_task_events=True,
    # No "task-sent" event per message: each was a second publish, through one event producer
    # that every sending thread queued on, and at a step end a rollout sends a dozen tasks (its
    # batches, the analysis, a check); py-spy of the control worker at 50 rollouts ending
    # together showed most busy threads there (scripts/bench-scale). Flower shows a task from
    # the worker's "received" on.
    task_send_sent_event=False,
    # Producer connections: more than the control worker's 16 threads, which waited for one.
    broker_pool_limit=32,
    worker_hijack_root_logger=False,
    timezone="UTC",
)
app.conf.update(_COMMON)
# `celery -A workers.app:app beat` runs this; a monitor's own interval is checked in the tick
# (canary/monitor.py), which claims each interval in Redis, so two beats never double-probe.
app.conf.beat_schedule = {
    "canary-monitor-tick": {
        "task": "canary.monitor_tick",
        "schedule": monitor_tick_s(),
        # A tick nobody ran in time is dropped: the next one does its work.
        "options": {"expires": monitor_tick_s()},
    }
}


@worker_shutdown.connect
def _finish_paced_batches(**_: Any) -> None:
    """A probe worker told to stop finishes the batches it accepted, as Celery would its tasks.

    Batch tasks return as soon as their batch is handed to the process's pacer, so without
    this a warm shutdown would drop every batch in progress.
    """
    left = PACER.drain()
    if left:
        log.warning(
            "stopped with %d probe batches unfinished; their windows count them missing", left
        )


def client(redis_url: str) -> Celery:
    """An app for sending tasks to and inspecting the fleet on ``redis_url`` (no result backend).

    Processes that only steer a fleet (the CLI) use this instead of ``app``, whose broker was
    fixed from the environment when this module was imported.
    """
    c = Celery("canary-client", broker=redis_url, set_as_current=False)
    c.conf.update(_COMMON)
    return c
