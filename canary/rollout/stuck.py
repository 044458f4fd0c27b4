"""Rollouts that stopped moving (their coordinator died, the workers are gone): one alert each."""

from __future__ import annotations

import logging

from canary.rollout import outcome
from canary.rollout.context import Context
from canary.rollout.record import RolloutRecord
from canary.rollout.windows import STRAGGLER_GRACE_S

log = logging.getLogger(__name__)


def stuck_limit(record: RolloutRecord) -> float:
    """How long a running rollout may go without progress before operators are told."""
    analysis = record.config.analysis
    if analysis.stuck_after:
        return float(analysis.stuck_after)
    return 3 * float(record.config.schedule.step_interval) + STRAGGLER_GRACE_S


def check_stuck(ctx: Context, *, limit: int = 200) -> list[str]:
    """Alert (once per rollout) on running rollouts that made no progress for too long.

    Progress is a window starting or a state change; a timed pause in progress is not being
    stuck, and a rollout paused by an operator is waiting on purpose.
    """
    now = ctx.now()
    stuck = []
    for raw in ctx.store.list_rollouts(limit=limit):
        if raw.get("state") != "running" or float(raw.get("pause_until") or 0) > now:
            continue
        try:
            record = RolloutRecord.from_dict(raw)
        except Exception as exc:  # a record this version cannot read is not ours to judge
            log.warning("rollout %s: unreadable record: %s", raw.get("id"), exc)
            continue
        idle = now - max(record.updated_at, record.window_started_at or 0.0)
        if idle < stuck_limit(record):
            continue
        with ctx.store.lock(record.id) as fence:
            current = ctx.store.load_record(record.id) if fence is not None else None
            if fence is None or current is None or current.state != "running":
                continue
            current.fence = fence
            reason = (
                f"no progress for {idle:.0f} s at step {current.step + 1}/{len(current.weights)}"
                f" (weight {current.weight}%); the limit is {stuck_limit(current):.0f} s; "
                f"likely cause: {likely_cause(ctx, current)}"
            )
            outcome.alert(ctx, current, "stuck", "rollout stuck", [reason], "warning")
            # Not progress: the stuck clock keeps counting from the last real one.
            outcome.save(ctx, current, progress=False)
        stuck.append(record.id)
    return stuck


def likely_cause(ctx: Context, record: RolloutRecord) -> str:
    """What most likely stopped a rollout, from what its last window holds (for the alert)."""
    from canary.settings import load_settings

    control = load_settings().control_queue
    if record.window is None:
        return f"no step ever started: is a control worker consuming {control}?"
    acc = ctx.store.window_accounting(record.id, record.window)
    batches = len(record.expected_batches)
    if batches and not acc["recorded"] and not acc["results"] and not acc["lookahead"]:
        queues = sorted(f"{ctx.queue_prefix}.{env}" for env in record.config.probes.environments)
        return (
            f"none of the step's {batches} probe batches reported: is a probe worker consuming "
            f"{', '.join(queues)}?"
        )
    due = (record.window_started_at or 0.0) + (record.window_interval or 0.0)
    late = ctx.now() - due
    if late > STRAGGLER_GRACE_S:
        return (
            f"the step's probes reported ({len(acc['recorded'])} of {batches} batches) but it "
            f"was not judged {late:.0f} s after its end: is a control worker consuming {control}?"
        )
    return f"the coordinator's next task never ran: is a control worker consuming {control}?"
