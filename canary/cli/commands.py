"""Operator commands as every edge sends them (CLI, dashboard, `local down`): a task, its answer."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from canary.rollout import state as st
from canary.settings import load_settings
from canary.store import Store

COMMANDS = ("pause", "resume", "promote", "abort")
# How long a sender waits for the control worker's answer by default.
ANSWER_WITHIN_S = 30.0


@dataclass(frozen=True)
class Sent:
    """What became of a command: ``status`` is HTTP-like (200 applied, 202 not answered yet,
    404 unknown rollout, 409 refused or the rollout already ended)."""

    ok: bool
    message: str
    status: int


def send_command(
    url: str, store: Store, rollout_id: str, command: str, *, wait_s: float = ANSWER_WITHIN_S
) -> Sent:
    """Refuse a finished rollout, else send the command task and wait up to ``wait_s`` for its answer.

    The control worker applies the command at once under the rollout's lock (canary.rollout.
    operator), so an answer normally arrives within a second or two.
    """
    from canary.local.flower import task_argsrepr
    from workers.app import client

    if command not in COMMANDS:
        return Sent(False, f"unknown command {command!r}; known: {', '.join(COMMANDS)}", 404)
    record = store.load_rollout(rollout_id)
    if record is None:
        return Sent(False, f"unknown rollout {rollout_id!r}", 404)
    if st.is_final(record["state"]):
        return Sent(
            False,
            f"rollout {rollout_id} already ended ({record['state']}); nothing to {command}",
            409,
        )
    command_id = uuid.uuid4().hex
    task = f"canary.{command}"
    task_args = [rollout_id, command_id]
    with client(url) as app:
        app.send_task(
            task,
            args=task_args,
            queue=load_settings().control_queue,
            argsrepr=task_argsrepr(task, task_args),
        )
    deadline = time.monotonic() + wait_s
    while (answer := store.command_answer(rollout_id, command_id)) is None:
        if time.monotonic() > deadline:
            return Sent(
                True,
                f"{command} sent for {rollout_id}, but no control worker answered within "
                f"{wait_s:.0f} s; it is applied when one runs",
                202,
            )
        time.sleep(0.1)
    if answer != "applied":
        return Sent(False, f"{command} for {rollout_id}: {answer}", 409)
    return Sent(True, f"{command} applied to {rollout_id}", 200)
