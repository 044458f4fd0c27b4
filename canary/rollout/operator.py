"""Operator commands (pause, resume, promote, abort) applied within seconds, and schedule pauses."""

from __future__ import annotations

from canary.analysis.decision import Decision
from canary.rollout import outcome
from canary.rollout.context import Context
from canary.rollout.record import RolloutRecord
from canary.store.redis_store import Command

# How long a command waits for the rollout's lock: a coordinator task holds it for seconds, and
# never past the lock's own lifetime (60 s), so the command is applied in the end.
COMMAND_LOCK_WAIT_S = 65.0
# Commands that end the rollout; when both arrive together the safer one wins.
ENDING = ("abort", "promote")


def enter_pause(ctx: Context, record: RolloutRecord, step: int) -> None:
    """Begin the schedule's pause before ``step``: timed, or until an operator acts."""
    duration = record.pauses[str(step)]
    if duration is None:
        outcome.set_state(
            ctx,
            record,
            "paused",
            Decision(
                "hold", ["a pause in the schedule: `canary rollout resume` or `promote` to go on"]
            ),
        )
    else:
        record.pause_until = ctx.now() + duration
        ctx.store.append_event(record.id, "pause", {"before_step": step, "seconds": duration})


def apply_controls(ctx: Context, record: RolloutRecord) -> bool:
    """Apply the queued operator commands; True when one of them ended the rollout.

    abort beats promote when both are queued: traffic on stable is the safe side. Every
    command is answered (Store.command_answer) and recorded, the one that lost included.
    """
    commands = ctx.store.pop_controls(record.id)
    if not commands:
        return False
    names = {c.command for c in commands}
    winner = next((c for c in ENDING if c in names), None)
    for c in commands:
        if winner is None or c.command == winner:
            answer = "applied"
        elif c.command in ENDING:
            answer = f"not applied: {winner} came at the same time and wins, being the safer"
        else:
            answer = f"not applied: the rollout ends by {winner}"
        _answer(ctx, record, c, answer)
    if winner == "abort":
        outcome.end(ctx, record, "aborted", Decision("rollback", ["aborted by an operator"]))
        return True
    if winner == "promote":
        outcome.end(ctx, record, "promoted", Decision("promote", ["promoted by an operator"]))
        return True
    for c in commands:
        if c.command == "pause" and record.state == "running":
            outcome.set_state(ctx, record, "paused", Decision("hold", ["paused by an operator"]))
        elif c.command == "resume" and record.pause_until is not None:
            record.pause_until = None
            ctx.store.append_event(record.id, "pause", {"ended": "resumed by an operator"})
        elif c.command == "resume" and record.state == "paused":
            outcome.set_state(ctx, record, "running", Decision("hold", ["resumed by an operator"]))
    return False


def _answer(ctx: Context, record: RolloutRecord, command: Command, answer: str) -> None:
    data: dict[str, str] = {"command": command.command, "result": answer}
    if command.id:
        data["id"] = command.id
        ctx.store.answer_command(record.id, command.id, answer)
    ctx.store.append_event(record.id, "command", data)


def command(ctx: Context, rollout_id: str, name: str, command_id: str) -> str:
    """Queue an operator command and apply it now, under the rollout's lock; says what became of it.

    The coordinator's own tasks apply queued commands too, so whichever holds the lock first
    answers; a rollout that already ended answers so, and nothing is queued for it.
    """
    if ctx.store.load_rollout(rollout_id) is None:
        return "unknown rollout"
    ctx.store.push_control(rollout_id, name, command_id=command_id)
    with ctx.store.lock(rollout_id, wait_s=COMMAND_LOCK_WAIT_S) as fence:
        if fence is None:
            return "queued: the coordinator applies it at its next task"
        record = ctx.store.load_record(rollout_id)
        if record is None:
            return "unknown rollout"
        if record.final:
            for c in ctx.store.pop_controls(rollout_id):
                _answer(ctx, record, c, f"not applied: the rollout already ended ({record.state})")
        else:
            record.fence = fence
            apply_controls(ctx, record)
            outcome.save(ctx, record)
    return ctx.store.command_answer(rollout_id, command_id) or "queued"


def replace(ctx: Context, old_id: str, new_id: str) -> None:
    """Abort ``old_id`` because ``new_id`` replaces it (rollout start --replace); recorded in both."""
    with ctx.store.lock(old_id, wait_s=COMMAND_LOCK_WAIT_S) as fence:
        record = ctx.store.load_record(old_id)
        if record is None or record.final:
            return
        # Without the lock (its holder is stuck) the end is still written, with the last token.
        record.fence = fence or record.fence
        record.replaced_by = new_id
        ctx.store.append_event(
            old_id, "command", {"command": "abort", "result": "applied", "by": new_id}
        )
        reason = f"aborted by an operator: replaced by rollout {new_id}"
        outcome.end(ctx, record, "aborted", Decision("rollback", [reason]))
        outcome.save(ctx, record)
