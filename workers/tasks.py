"""Celery tasks: thin wrappers that take ids and plain JSON and call canary's controller.

Names are stable (``canary.*``) so that other services can send them with ``app.send_task``
without importing this code.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from celery import Task

from canary.errors import CanaryError, StoreError
from canary.fleet import run_batch
from canary.rollout import controller
from canary.rollout.config import RolloutConfig
from canary.settings import load_settings
from canary.store import Store
from workers.app import app

log = logging.getLogger(__name__)

# Coordinator tasks retry while Redis is away; past this many tries the rollout fails safe.
MAX_RETRIES = 8


@lru_cache(maxsize=1)
def _store() -> Store:
    return Store.from_url(load_settings().redis_url)


class CeleryDispatcher:
    """Schedules the controller's next steps as Celery tasks on the right queues."""

    def probe(self, batch: dict[str, Any], queue: str) -> None:
        probe_batch.apply_async(args=[batch], queue=queue)

    def analyze(self, rollout_id: str, window: str, countdown: float) -> None:
        analyze.apply_async(args=[rollout_id, window], countdown=countdown)

    def advance(self, rollout_id: str, step: int, attempt: int, countdown: float) -> None:
        advance.apply_async(args=[rollout_id, step, attempt], countdown=countdown)


def _ctx() -> controller.Context:
    return controller.Context(
        store=_store(),
        dispatcher=CeleryDispatcher(),
        queue_prefix=load_settings().probe_queue_prefix,
    )


def _coordinate(task: Task, rollout_id: str, what: str, fn: Any, *args: Any) -> str:
    """Run a controller step; retry with backoff on Redis trouble, fail safe when out of tries."""
    try:
        return str(fn(_ctx(), rollout_id, *args))
    except StoreError as exc:
        if task.request.retries < MAX_RETRIES:
            raise task.retry(exc=exc, countdown=min(2**task.request.retries, 30)) from exc
        reason = f"{what} failed {MAX_RETRIES + 1} times: {exc}"
    except CanaryError as exc:
        reason = f"{what} failed: {exc}"
    except Exception as exc:
        log.exception("%s of %s crashed", what, rollout_id)
        reason = f"{what} crashed: {type(exc).__name__}: {exc}"
    try:
        controller.fail_safe(_ctx(), rollout_id, reason)
    except Exception:
        log.exception("fail-safe of %s could not run", rollout_id)
    return "failed"


@app.task(name="canary.start_rollout", bind=True, acks_late=True)
def start_rollout(
    self: Task,
    config: dict[str, Any],
    transactions: list[dict[str, Any]],
    rollout_id: str | None = None,
) -> str:
    """Create a rollout from a config and its transactions (plain JSON); returns its id."""
    from canary.transactions import Transaction

    cfg = RolloutConfig.model_validate(config)
    txs = [Transaction.model_validate(t).model_dump(mode="json") for t in transactions]
    record = controller.create(_ctx(), cfg, txs, rollout_id=rollout_id)
    return str(record["id"])


@app.task(
    name="canary.advance",
    bind=True,
    acks_late=True,
    max_retries=MAX_RETRIES,
    soft_time_limit=120,
    time_limit=150,
)
def advance(self: Task, rollout_id: str, step: int, attempt: int) -> str:
    """Set the weight for (step, attempt) and fan its probes out."""
    return _coordinate(self, rollout_id, f"step {step}", controller.advance, step, attempt)


@app.task(
    name="canary.analyze",
    bind=True,
    acks_late=True,
    max_retries=MAX_RETRIES,
    soft_time_limit=120,
    time_limit=150,
)
def analyze(self: Task, rollout_id: str, window: str) -> str:
    """Judge a probing window and apply the decision."""
    return _coordinate(self, rollout_id, f"analysis of {window}", controller.analyze, window)


@app.task(name="canary.probe_batch", bind=True, acks_late=True, max_retries=3)
def probe_batch(self: Task, batch: dict[str, Any]) -> dict[str, Any]:
    """Run a batch of synthetic transactions against one version and record the results once."""
    try:
        return run_batch(_store(), batch)
    except StoreError as exc:
        raise self.retry(exc=exc, countdown=2**self.request.retries) from exc


def _command(rollout_id: str, command: str) -> str:
    store = _store()
    if store.load_rollout(rollout_id) is None:
        return "unknown rollout"
    store.push_control(rollout_id, command)
    return "queued"


@app.task(name="canary.pause")
def pause(rollout_id: str) -> str:
    """Hold the rollout at its current weight until resumed."""
    return _command(rollout_id, "pause")


@app.task(name="canary.resume")
def resume(rollout_id: str) -> str:
    """Let a paused rollout go on."""
    return _command(rollout_id, "resume")


@app.task(name="canary.promote")
def promote(rollout_id: str) -> str:
    """Send all traffic to the canary now and end the rollout."""
    return _command(rollout_id, "promote")


@app.task(name="canary.abort")
def abort(rollout_id: str) -> str:
    """Send all traffic back to stable now and end the rollout."""
    return _command(rollout_id, "abort")
