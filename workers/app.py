"""The Celery app: broker and backend from CANARY_REDIS_URL, JSON only, late acks, queue routing."""

from __future__ import annotations

from celery import Celery

from canary.settings import load_settings

_settings = load_settings()
_url = _settings.redis_url or "redis://127.0.0.1:6379/0"

app = Celery("canary", broker=_url, backend=_url, include=["workers.tasks"])
_COMMON = dict(
    # JSON only: a message can never make a worker unpickle (and so run) attacker-chosen code.
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
    broker_transport_options={"visibility_timeout": 3600},
    worker_send_task_events=True,
    task_send_sent_event=True,
    worker_hijack_root_logger=False,
    timezone="UTC",
)
app.conf.update(_COMMON)


def client(redis_url: str) -> Celery:
    """An app for sending tasks to and inspecting the fleet on ``redis_url`` (no result backend).

    Processes that only steer a fleet (the CLI) use this instead of ``app``, whose broker was
    fixed from the environment when this module was imported.
    """
    c = Celery("canary-client", broker=redis_url, set_as_current=False)
    c.conf.update(_COMMON)
    return c
