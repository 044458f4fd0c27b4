"""Celery tasks: thin wrappers that take ids and plain JSON and call canary's controller.

Names are stable (``canary.*``) so that other services can send them with ``app.send_task``
without importing this code.
"""

from __future__ import annotations

import functools
import logging
import os
import time
import uuid
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from celery import Task

from canary import monitor
from canary.errors import CanaryError, StoreError
from canary.fleet import submit_batch
from canary.local.flower import task_argsrepr
from canary.rollout import controller, offline, operator
from canary.rollout.config import validate_config
from canary.rollout.windows import BatchSpec
from canary.settings import load_settings
from canary.store import Store
from canary.store.redis_store import connect
from canary.store.retry import UNREACHABLE, retry
from workers.app import app, visibility_timeout

log = logging.getLogger(__name__)

# Coordinator tasks retry while Redis is away; past this many tries the rollout fails safe.
MAX_RETRIES = 8
# The coordinator's tasks (advance, analyze, check) are short and safe to run again, and retry
# through _coordinate while Redis is away; they share these options.
COORDINATOR_TASK: dict[str, Any] = {
    "bind": True,
    "acks_late": True,
    # Nobody reads what these return (Flower shows it from the task events): storing it wrote
    # a result and a STARTED state per task, kept a day, the largest Redis cost of a long
    # rollout after its results (a check every few seconds, a task per probe batch).
    "ignore_result": True,
    "max_retries": MAX_RETRIES,
    "soft_time_limit": 120,
    "time_limit": 150,
}
# A batch may run this long past its spread before Celery stops it (it then counts as missing).
BATCH_SLACK_S = controller.STRAGGLER_GRACE_S + 30.0


def redis_deadline() -> float:
    """CANARY_REDIS_DEADLINE: seconds without Redis after which rollouts fail safe (default 60)."""
    try:
        return max(1.0, float(os.environ.get("CANARY_REDIS_DEADLINE") or 60.0))
    except ValueError:
        return 60.0


def max_countdown() -> float:
    # A task waiting for its countdown is held unacknowledged; past the visibility timeout Redis
    # would hand it out again, so no countdown is longer than half of it (callers re-check).
    return visibility_timeout() / 2


@lru_cache(maxsize=1)
def _store() -> Store:
    return Store.from_url(load_settings().redis_url)


class CeleryDispatcher:
    """Schedules the controller's next steps as Celery tasks on the right queues."""

    def probe(self, batches: Sequence[BatchSpec], queue: str) -> None:
        # One message for the step's batches of a queue; a probe worker sends each as its own
        # task (canary.probe_fanout). Sending them one by one was a tenth of the control
        # worker's CPU at 50 rollouts (py-spy, scripts/bench-scale).
        if not batches:
            return
        args = [[b.to_dict() for b in batches], queue]
        first = batches[0]
        probe_fanout.apply_async(
            args=args,
            queue=queue,
            argsrepr=f"rollout={first.rollout_id} window={first.window} batches={len(batches)}",
        )

    def analyze(self, rollout_id: str, window: str, countdown: float) -> None:
        _schedule(analyze, [rollout_id, window], countdown)

    def check(self, rollout_id: str, window: str, countdown: float) -> None:
        _schedule(check, [rollout_id, window], countdown)

    def advance(self, rollout_id: str, step: int, attempt: int, countdown: float) -> None:
        _schedule(advance, [rollout_id, step, attempt], countdown)


def _schedule(task: Task, args: list[Any], countdown: float) -> None:
    """Send ``task`` after ``countdown`` s; longer waits hop through ``canary.later``.

    A task waiting for its countdown is held unacknowledged, and past the visibility timeout
    Redis would hand it to another worker as well; so no single wait exceeds half of it.
    """
    if countdown <= max_countdown():
        task.apply_async(
            args=args, countdown=max(0.0, countdown), argsrepr=task_argsrepr(task.name, args)
        )
    else:
        later.apply_async(
            args=[task.name, args, time.time() + countdown],
            countdown=max_countdown(),
            argsrepr=_later_repr(task.name, args),
        )


def _ctx() -> controller.Context:
    return controller.Context(
        store=_store(),
        dispatcher=CeleryDispatcher(),
        queue_prefix=load_settings().probe_queue_prefix,
    )


def _coordinate(task: Task, rollout_id: str, what: str, fn: Any, *args: Any) -> str:
    """Run a controller step; retry with backoff while Redis is away, fail safe past a deadline.

    The retries happen in this task rather than through the broker, which is the same Redis
    and so is away too; past the deadline traffic goes to stable from what this process
    remembers, and the record says so as soon as Redis answers again.
    """
    GUARD.start()
    if rollout_id in GUARD.pending:
        GUARD.settle()
        return "failed"
    try:
        return str(
            retry(
                lambda: fn(_ctx(), rollout_id, *args),
                deadline_s=redis_deadline(),
                what=f"{what} of {rollout_id}",
            )
        )
    except UNREACHABLE as exc:
        GUARD.fail_offline(
            rollout_id, f"{what}: Redis unreachable for {redis_deadline():g}s: {exc}"
        )
        GUARD.settle()
        return "failed"
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


GUARD = offline.RedisGuard(
    make_ctx=_ctx,
    client=lambda: connect(load_settings().redis_url),
    deadline_s=redis_deadline,
    fail_safe=controller.fail_safe,
)


@app.task(name="canary.start_rollout", bind=True, acks_late=True)
def start_rollout(
    self: Task,
    config: dict[str, Any],
    transactions: list[dict[str, Any]],
    rollout_id: str | None = None,
    replace: bool = False,
    retry_of: str | None = None,
) -> str:
    """Create a rollout from a config and its transactions (plain JSON); returns its id.

    ``replace``: abort the rollout already running for the same service first (otherwise a
    second rollout of a service is refused with an error naming the running one).
    ``retry_of``: the ended rollout this one starts again (`canary rollout retry`).
    """
    from canary.transactions import Transaction

    # Checked as `rollout start` checks a file, so a bad option is answered, not left to a step.
    cfg = validate_config(config)
    txs = [Transaction.model_validate(t).model_dump(mode="json") for t in transactions]
    record = controller.create(
        _ctx(), cfg, txs, rollout_id=rollout_id, replace=replace, retry_of=retry_of
    )
    return str(record["id"])


@app.task(
    name="canary.advance",
    **COORDINATOR_TASK,
)
def advance(self: Task, rollout_id: str, step: int, attempt: int) -> str:
    """Set the weight for (step, attempt) and fan its probes out."""
    return _coordinate(self, rollout_id, f"step {step}", controller.advance, step, attempt)


@app.task(
    name="canary.analyze",
    **COORDINATOR_TASK,
)
def analyze(self: Task, rollout_id: str, window: str) -> str:
    """Judge a probing window and apply the decision."""
    return _coordinate(self, rollout_id, f"analysis of {window}", controller.analyze, window)


@app.task(
    name="canary.check",
    **COORDINATOR_TASK,
)
def check(self: Task, rollout_id: str, window: str, chain: bool = True) -> str:
    """Look at the results pushed so far in a running window; roll back at once if warranted.

    ``chain=False``: a one-off look that a probe worker asked for after a failed canary run.
    """
    look = functools.partial(controller.check, chain=chain)
    return _coordinate(self, rollout_id, f"interim check of {window}", look, window)


def send_batch(batch: dict[str, Any], queue: str) -> None:
    """Send one probe batch (plain JSON) to ``queue``, with a time limit for its spread."""
    limit = float(batch["spread_s"]) + BATCH_SLACK_S
    probe_batch.apply_async(
        args=[batch],
        queue=queue,
        soft_time_limit=limit,
        time_limit=limit + 15,
        argsrepr=task_argsrepr(probe_batch.name, [batch]),
    )


@app.task(
    name="canary.probe_fanout",
    acks_late=True,
    ignore_result=True,
    soft_time_limit=30,
    time_limit=45,
)
def probe_fanout(batches: list[dict[str, Any]], queue: str) -> int:
    """Send each of a step's probe batches for ``queue`` (the controller grouped them by it) as
    its own task, from the probe worker that got them.

    A re-delivered copy sends them again, which is harmless: a batch is claimed and recorded
    once (canary.fleet). Returns how many were sent.
    """
    for batch in batches:
        send_batch(batch, queue)
    return len(batches)


@app.task(name="canary.probe_batch", bind=True, acks_late=True, max_retries=3, ignore_result=True)
def probe_batch(self: Task, batch: dict[str, Any]) -> dict[str, Any]:
    """Run a batch of synthetic transactions against both versions and record the results once."""

    args = [batch["rollout_id"], batch["window"]]

    def analyze_now() -> None:
        analyze.apply_async(args=args, argsrepr=task_argsrepr(analyze.name, args))

    def check_soon(countdown: float) -> None:
        check.apply_async(
            args=args,
            kwargs={"chain": False},
            countdown=countdown,
            argsrepr=task_argsrepr(check.name, args),
        )

    # Returns once the batch is handed to this process's pacer: the slot is not held while
    # the batch's probes wait for their time (canary.fleet.Pacer).
    try:
        out, _ = submit_batch(
            _store(), batch, on_complete=analyze_now, on_failure=check_soon, defer=True
        )
    except StoreError as exc:
        raise self.retry(exc=exc, countdown=2**self.request.retries) from exc
    if out.get("deferred") or out.get("accepted"):
        # The batch runs in a pacer (this one's, or another runner's for a re-delivered copy):
        # a watch copy looks again later in a new short task, unacknowledged meanwhile, so that
        # if the runner dies the batch is still taken over, as this task would have been.
        wait = max(1.0, min(max_countdown(), float(out["check_by"]) - time.time()))
        queue = f"{load_settings().probe_queue_prefix}.{batch.get('environment') or 'default'}"
        self.apply_async(
            args=[batch],
            queue=queue,
            countdown=wait,
            argsrepr=task_argsrepr(probe_batch.name, [batch]),
        )
    return out


@app.task(name="canary.later", acks_late=True, ignore_result=True)
def later(task_name: str, args: list[Any], due_at: float) -> str:
    """Send ``task_name(*args)`` at ``due_at`` (Unix time), waiting in hops (see _schedule)."""
    left = due_at - time.time()
    if left > 0.05:
        later.apply_async(
            args=[task_name, args, due_at],
            countdown=min(left, max_countdown()),
            argsrepr=_later_repr(task_name, args),
        )
        return "waiting"
    app.send_task(task_name, args=args, argsrepr=task_argsrepr(task_name, args))
    return "sent"


def _later_repr(task_name: str, args: list[Any]) -> str:
    return f"{task_name} {task_argsrepr(task_name, args)}"


# Operator commands are short: they wait for the rollout's lock (a coordinator holds it for
# seconds) and apply themselves, so they act within seconds whatever the step interval.
COMMAND_TASK: dict[str, Any] = {"soft_time_limit": 90, "time_limit": 120}


def _command(rollout_id: str, command: str, command_id: str | None = None) -> str:
    """Apply an operator command now; returns what became of it (for the sender)."""
    return operator.command(_ctx(), rollout_id, command, command_id or uuid.uuid4().hex)


@app.task(name="canary.pause", **COMMAND_TASK)
def pause(rollout_id: str, command_id: str | None = None) -> str:
    """Hold the rollout at its current weight until resumed."""
    return _command(rollout_id, "pause", command_id)


@app.task(name="canary.resume", **COMMAND_TASK)
def resume(rollout_id: str, command_id: str | None = None) -> str:
    """Let a paused rollout go on."""
    return _command(rollout_id, "resume", command_id)


@app.task(name="canary.promote", **COMMAND_TASK)
def promote(rollout_id: str, command_id: str | None = None) -> str:
    """Send all traffic to the canary now and end the rollout (an abort at the same time wins)."""
    return _command(rollout_id, "promote", command_id)


@app.task(name="canary.abort", **COMMAND_TASK)
def abort(rollout_id: str, command_id: str | None = None) -> str:
    """Send all traffic back to stable now and end the rollout."""
    return _command(rollout_id, "abort", command_id)


@app.task(
    name="canary.monitor_tick",
    acks_late=False,
    ignore_result=True,
    soft_time_limit=30,
    time_limit=45,
)
def monitor_tick() -> list[str]:
    """Beat's task: probe stable monitors that are due, and alert on stuck rollouts."""

    def send(service: str, queue: str, at: float, expires_s: float) -> None:
        args = [service, at]
        monitor_probe.apply_async(
            args=args, queue=queue, expires=max(1.0, expires_s), argsrepr=f"{service} @{at:.0f}"
        )

    due = monitor.tick(_store(), send)
    # The beat also watches for rollouts that stopped moving (their coordinator died, say).
    controller.check_stuck(_ctx())
    return due


# At most once (acks early): a probe lost with its worker costs one history sample, while a
# re-delivered one would add the same interval twice.
@app.task(name="canary.monitor_probe", acks_late=False, soft_time_limit=240, time_limit=270)
def monitor_probe(service: str, at: float) -> int:
    """Run a service's monitor once against its stable version; returns the results added."""
    return len(monitor.probe(_store(), service))
