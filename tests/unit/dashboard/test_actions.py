"""The buttons' path: the CLI's checks, then Store.push_control (real Redis)."""

from __future__ import annotations

from canary.dashboard.app import send_command
from canary.store import Store


def test_actions_queue_like_the_cli_and_refuse_ended_rollouts(redis_url: str) -> None:
    store = Store.from_url(redis_url)
    for rid, state in (("live-1", "running"), ("done-1", "promoted")):
        store.create_rollout({"id": rid, "name": rid, "state": state, "created_at": 1.0})
    assert send_command(store, "nope", "abort") == (False, "unknown rollout 'nope'", 404)
    ok, message, status = send_command(store, "done-1", "abort")
    assert (ok, status) == (False, 409) and "already ended (promoted)" in message
    assert store.pop_controls("done-1") == []
    ok, message, status = send_command(store, "live-1", "pause")
    assert (ok, status) == (True, 202) and message.startswith("pause queued")
    assert store.pop_controls("live-1") == ["pause"]
