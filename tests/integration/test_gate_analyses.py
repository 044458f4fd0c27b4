"""The gate's start-or-poll over a real Redis: one start per analysis, a start nobody takes fails.

The starter here creates the record in this process (controller.create with a dispatcher that
schedules nothing), so these tests look at the gate's bookkeeping, not at a fleet; the fleet
path is tests/integration/test_gate.py.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from canary.errors import StoreError
from canary.gate.analyses import Analyses, AnalysisRequest, rollout_id
from canary.gate.config import GateConfig
from canary.rollout import controller
from canary.rollout.config import RolloutConfig
from canary.store import Store

ROOT = Path(__file__).resolve().parents[2]


class _Idle:
    def probe(self, batch: dict[str, Any], queue: str) -> None: ...

    def analyze(self, rollout_id: str, window: str, countdown: float) -> None: ...

    def check(self, rollout_id: str, window: str, countdown: float) -> None: ...

    def advance(self, rollout_id: str, step: int, attempt: int, countdown: float) -> None: ...


class _Starter:
    """Counts starts; creates the record only when ``create`` (a worker that took the task)."""

    def __init__(self, store: Store, *, create: bool) -> None:
        self.store = store
        self.create = create
        self.started: list[str] = []
        self.lock = threading.Lock()

    def start(self, config: RolloutConfig, transactions: list[dict[str, Any]], rid: str) -> None:
        with self.lock:
            self.started.append(rid)
        if self.create:
            ctx = controller.Context(store=self.store, dispatcher=_Idle())
            controller.create(ctx, config, transactions, rollout_id=rid)


def _gate(tmp_path: Path) -> GateConfig:
    (tmp_path / "browse.yaml").write_text(
        (ROOT / "configs" / "transactions" / "demo-browse.yaml").read_text()
    )
    return GateConfig.load(tmp_path)


REQUEST = AnalysisRequest(
    "verdicts\0shop-1",
    "shop-1",
    "shop",
    "http://127.0.0.1:9",
    "http://127.0.0.1:9",
    ("browse.yaml",),
)


def test_concurrent_first_polls_start_one_analysis(tmp_path: Path, redis_url: str) -> None:
    store = Store.from_url(redis_url)
    starter = _Starter(store, create=True)
    analyses = Analyses(store, _gate(tmp_path), starter)
    answers = []
    threads = [
        threading.Thread(target=lambda: answers.append(analyses.ensure(REQUEST))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert starter.started == [rollout_id(REQUEST)]
    assert {a.verdict for a in answers} == {"running"} and len(answers) == 8
    record = store.load_rollout(rollout_id(REQUEST))
    assert record is not None and record["config"]["router"] == {"type": "noop"}
    assert analyses.ensure(REQUEST).isolated == "pending"


def test_a_start_no_worker_takes_turns_to_fail(tmp_path: Path, redis_url: str) -> None:
    store = Store.from_url(redis_url)
    now = [1000.0]
    analyses = Analyses(store, _gate(tmp_path), _Starter(store, create=False), clock=lambda: now[0])
    first = analyses.ensure(REQUEST)
    assert first.verdict == "running" and "waiting for a worker" in first.reasons[0]
    now[0] += 30
    assert analyses.ensure(REQUEST).verdict == "running"
    now[0] += 31
    late = analyses.ensure(REQUEST)
    assert late.verdict == "fail" and "workers running" in late.reasons[0]


def test_poll_never_starts(tmp_path: Path, redis_url: str) -> None:
    store = Store.from_url(redis_url)
    starter = _Starter(store, create=True)
    analyses = Analyses(store, _gate(tmp_path), starter)
    assert analyses.poll(REQUEST) is None and starter.started == []


def test_a_start_that_could_not_be_sent_is_sent_again(tmp_path: Path, redis_url: str) -> None:
    store = Store.from_url(redis_url)

    class _Away(_Starter):
        def start(
            self, config: RolloutConfig, transactions: list[dict[str, Any]], rid: str
        ) -> None:
            self.tries = getattr(self, "tries", 0) + 1
            if self.tries == 1:
                raise StoreError("cannot send the analysis to the fleet: broker away")
            super().start(config, transactions, rid)

    starter = _Away(store, create=True)
    analyses = Analyses(store, _gate(tmp_path), starter)
    with pytest.raises(StoreError, match="broker away"):
        analyses.ensure(REQUEST)
    assert analyses.ensure(REQUEST).verdict == "running"
    assert starter.tries == 2 and starter.started == [rollout_id(REQUEST)]
