"""`canary run`'s fail safe with real Redis and a real command router, in this process."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from canary.cli import rollouts
from canary.rollout import controller
from canary.rollout.config import load_rollout
from canary.store import Store
from tests.fixtures.rollouts import given_weights, rollout_file
from tests.fixtures.services import DemoFactory

pytestmark = pytest.mark.integration


def test_a_signal_before_the_worker_created_the_rollout_keeps_it_from_moving_traffic(
    tmp_path: Path,
    redis_url: str,
    demo_service_factory: DemoFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No worker takes the start task: the signal came before the rollout existed. The ceiling
    # is short here because the record is known never to come.
    monkeypatch.setattr(rollouts, "CREATED_WITHIN_S", 0.5)
    weights = tmp_path / "weights"
    path = rollout_file(
        tmp_path / "late.yaml",
        demo_service_factory,
        schedule={"steps": [10, 100], "step_interval": "1s", "isolated_check": False},
        weights=weights,
    )
    config, transactions = load_rollout(str(path))
    store = Store.from_url(redis_url)
    rid = controller.new_rollout_id(config.name)
    fleet = rollouts.RunFleet(redis_url)
    console = Console(file=(tmp_path / "out.txt").open("w"), soft_wrap=True)

    code = rollouts._interrupted(store, config, rid, console, fleet, "SIGINT")

    console.file.close()
    out = (tmp_path / "out.txt").read_text()
    assert code == 1
    assert "interrupted by SIGINT: traffic sent to stable" in out
    assert "not created yet" in out
    assert given_weights(weights) == ["0"]
    # The start task reaches a worker later: its first step ends it before any traffic moves.
    ctx = controller.Context(store=store, dispatcher=rollouts.NoDispatch())
    controller.create(ctx, config, transactions, rollout_id=rid)
    assert controller.advance(ctx, rid, 0, 0) == "aborted"
    record = store.load_rollout(rid)
    assert record is not None and record["state"] == "aborted" and record["weight"] == 0
    assert given_weights(weights)[-1] == "0" and "10" not in given_weights(weights)
