"""The buttons' path: the CLI's checks, then the command task (real Redis, no worker answering)."""

from __future__ import annotations

import pytest

from canary.dashboard import app as dashboard
from canary.store import Store


def test_actions_go_the_cli_path_and_refuse_ended_rollouts(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.from_url(redis_url)
    for rid, state in (("live-1", "running"), ("done-1", "promoted")):
        store.create_rollout({"id": rid, "name": rid, "state": state, "created_at": 1.0})
    send = dashboard.send_command
    assert send(redis_url, store, "nope", "abort") == (False, "unknown rollout 'nope'", 404)
    ok, message, status = send(redis_url, store, "done-1", "abort")
    assert (ok, status) == (False, 409) and "already ended (promoted)" in message
    # No control worker runs here: the task waits in the broker, unanswered.
    monkeypatch.setattr(dashboard, "ACTION_WAIT_S", 0.5)
    ok, message, status = send(redis_url, store, "live-1", "pause")
    assert (ok, status) == (True, 202) and message.startswith("pause sent for live-1")
