"""The controller's step logic with real Redis and real demo services.

Tasks run in this process through a small scheduler standing in for the dispatcher, so each
test drives advance → probe batches → analyze deterministically. (The Celery path is covered by
tests/e2e with real worker processes.)
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from canary.analysis.engine import AnalysisEngine
from canary.errors import ConfigError
from canary.fleet import run_batch
from canary.plugins import Options as PluginOptions
from canary.rollout import controller, operator
from canary.rollout import state as st
from canary.rollout.config import load_rollout
from canary.rollout.windows import BatchSpec
from canary.store import Store
from tests.fixtures.services import DemoFactory

ROOT = Path(__file__).resolve().parents[2]
TX = [str(ROOT / "configs" / "transactions" / f"demo-{n}.yaml") for n in ("browse", "checkout")]


@dataclass
class InlineDispatcher:
    """Runs scheduled tasks in this process, in due order, as fast as their countdowns allow.

    Probe batches run one after the other, unless ``threaded_probes``: then each runs in its
    own thread, as on a worker, so that steps longer than a second do not add up.
    """

    store: Store
    queue: list[tuple[float, int, str, tuple[Any, ...]]] = field(default_factory=list)
    counter: itertools.count = field(default_factory=itertools.count)
    queues_used: set[str] = field(default_factory=set)
    threaded_probes: bool = False
    checks: list[str] = field(default_factory=list)  # what each interim check answered
    batches: list[dict[str, Any]] = field(default_factory=list)  # what each batch returned
    advances: list[str] = field(default_factory=list)  # what each advance task answered

    def probe(self, batches: Sequence[BatchSpec], queue: str) -> None:
        self.queues_used.add(queue)
        # As the task messages carry them: plain JSON, one task per batch.
        for batch in batches:
            heapq.heappush(
                self.queue, (time.time(), next(self.counter), "probe", (batch.to_dict(),))
            )

    def analyze(self, rollout_id: str, window: str, countdown: float) -> None:
        heapq.heappush(
            self.queue,
            (time.time() + countdown, next(self.counter), "analyze", (rollout_id, window)),
        )

    def check(self, rollout_id: str, window: str, countdown: float) -> None:
        heapq.heappush(
            self.queue,
            (time.time() + countdown, next(self.counter), "check", (rollout_id, window)),
        )

    def advance(self, rollout_id: str, step: int, attempt: int, countdown: float) -> None:
        heapq.heappush(
            self.queue,
            (time.time() + countdown, next(self.counter), "advance", (rollout_id, step, attempt)),
        )

    def run(
        self,
        ctx: controller.Context,
        deadline_s: float = 120,
        until: Callable[[], bool] | None = None,
    ) -> None:
        """Run tasks until none is left, the deadline passes, or ``until()`` says so."""
        end = time.time() + deadline_s
        threads: list[threading.Thread] = []
        while self.queue and time.time() < end:
            due, _, kind, args = heapq.heappop(self.queue)
            while (left := due - time.time()) > 0 and not (until and until()):
                time.sleep(min(left, 0.2))
            if until and until():
                break
            if kind == "probe" and self.threaded_probes:
                threads.append(threading.Thread(target=self._probe, args=args))
                threads[-1].start()
            elif kind == "probe":
                self._probe(args[0])
            elif kind == "analyze":
                controller.analyze(ctx, *args)
            elif kind == "check":
                self.checks.append(controller.check(ctx, *args))
            else:
                self.advances.append(controller.advance(ctx, *args))
        for t in threads:
            t.join(max(0.0, end - time.time()))

    def _probe(self, batch: dict[str, Any]) -> None:
        self.batches.append(run_batch(self.store, batch))


def _config(tmp: Path, stable: str, canary: str, **over: Any) -> Path:
    doc: dict[str, Any] = {
        "name": "t",
        "stable": {"url": stable},
        "canary": {"url": canary},
        "transactions": TX,
        "schedule": {"initial_weight": 50, "step_weight": 50, "step_interval": 1},
        "probes": {"per_step": 12, "batch_size": 6, "concurrency": 4},
        "slo": {
            "success_threshold": 90,
            "max_latency_increase_pct": 200,
            "max_error_rate_increase_pp": 5,
        },
        "analysis": {"max_holds": 1, "min_samples": 10},
        **over,
    }
    path = tmp / "rollout.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _run(
    redis_url: str, path: Path, *, interim: bool = False
) -> tuple[dict[str, Any], list[dict[str, Any]], InlineDispatcher]:
    """Run a rollout to its end. ``interim``: batches in parallel threads (so that their pushes
    meet interim checks), stopping as soon as the rollout ends rather than when tasks run out."""
    store = Store.from_url(redis_url)
    disp = InlineDispatcher(store, threaded_probes=interim)
    ctx = controller.Context(store=store, dispatcher=disp)
    cfg, txs = load_rollout(path)
    rec = controller.create(ctx, cfg, txs)
    if interim:

        def finished() -> bool:
            return st.is_final((store.load_rollout(rec["id"]) or {"state": "running"})["state"])

        disp.run(ctx, 60, until=finished)
    else:
        disp.run(ctx)
    final = store.load_rollout(rec["id"])
    assert final is not None
    return final, [e for _, e in store.read_events(rec["id"])], disp


def test_healthy_canary_walks_every_weight_and_is_promoted(
    tmp_path: Path, redis_url: str, demo_service_factory: DemoFactory
) -> None:
    path = _config(tmp_path, demo_service_factory("s").url, demo_service_factory("c").url)
    final, events, disp = _run(redis_url, path)
    assert (
        final["state"] == "promoted" and final["outcome"] == "promoted" and final["weight"] == 100
    )
    weights = [e["data"]["weight"] for e in events if e["type"] == "weight"]
    assert weights == [0, 50, 100]
    assert disp.queues_used == {"canary.probe.default"}
    decisions = [e["data"]["action"] for e in events if e["type"] == "decision"]
    assert decisions[-1] == "promote" and decisions.count("rollback") == 0
    # The sequential engine's evidence travels between tasks, under its own key.
    store = Store.from_url(redis_url)
    engine = store.load_engine(final["id"])
    assert engine and AnalysisEngine.from_state(engine).to_state() == engine
    assert "engine" not in final
    # every probe of every window was recorded exactly once
    for w in store.windows(final["id"]):
        assert len(store.window_results(final["id"], w)) == 12 * 2 * len(TX)


def test_faulty_canary_is_rolled_back_before_traffic_moves(
    tmp_path: Path, redis_url: str, demo_service_factory: DemoFactory
) -> None:
    path = _config(
        tmp_path, demo_service_factory("s").url, demo_service_factory("c", error_rate=0.6).url
    )
    final, events, _ = _run(redis_url, path)
    assert final["state"] == "rolled_back" and final["weight"] == 0
    assert [e["data"]["weight"] for e in events if e["type"] == "weight"] == [0]
    assert any(e["type"] == "alert" and e["data"]["kind"] == "rollback" for e in events)
    assert final["reasons"]


def test_unreachable_canary_is_a_failure_not_a_crash(
    tmp_path: Path, redis_url: str, demo_service_factory: DemoFactory
) -> None:
    path = _config(tmp_path, demo_service_factory("s").url, "http://127.0.0.1:9")
    final, _events, _ = _run(redis_url, path)
    assert final["state"] == "rolled_back"
    store = Store.from_url(redis_url)
    canary = [r for r in store.all_results(final["id"]) if r.version == "canary"]
    assert canary and all(not r.ok and r.error for r in canary)


def test_operator_abort_rolls_back_at_the_next_step(
    tmp_path: Path, redis_url: str, demo_service_factory: DemoFactory
) -> None:
    path = _config(tmp_path, demo_service_factory("s").url, demo_service_factory("c").url)
    store = Store.from_url(redis_url)
    disp = InlineDispatcher(store)
    ctx = controller.Context(store=store, dispatcher=disp)
    cfg, txs = load_rollout(path)
    rec = controller.create(ctx, cfg, txs)
    store.push_control(rec["id"], "abort")
    disp.run(ctx)
    final = store.load_rollout(rec["id"])
    assert final is not None and final["state"] == "aborted" and final["outcome"] == "rolled_back"


def test_stale_and_duplicate_tasks_change_nothing(
    tmp_path: Path, redis_url: str, demo_service_factory: DemoFactory
) -> None:
    path = _config(tmp_path, demo_service_factory("s").url, demo_service_factory("c").url)
    final, _events, disp = _run(redis_url, path)
    ctx = controller.Context(store=Store.from_url(redis_url), dispatcher=disp)
    assert controller.advance(ctx, final["id"], 0, 0) == "finished"
    assert controller.analyze(ctx, final["id"], "s0a0") == "stale"
    assert Store.from_url(redis_url).load_rollout(final["id"]) == final


def test_the_threshold_judge_can_still_be_chosen(
    tmp_path: Path, redis_url: str, demo_service_factory: DemoFactory
) -> None:
    path = _config(
        tmp_path,
        demo_service_factory("s").url,
        demo_service_factory("c").url,
        analysis={"judge": "threshold", "max_holds": 1, "min_samples": 10},
    )
    final, _events, _ = _run(redis_url, path)
    assert final["state"] == "promoted" and "engine" not in final
    assert Store.from_url(redis_url).load_engine(final["id"]) is None


def test_timed_pause_waits_between_steps(
    tmp_path: Path, redis_url: str, demo_service_factory: DemoFactory
) -> None:
    schedule = {"steps": [50, {"pause": {"duration": "3s"}}, 100], "step_interval": 1}
    path = _config(
        tmp_path, demo_service_factory("s").url, demo_service_factory("c").url, schedule=schedule
    )
    final, events, _ = _run(redis_url, path)
    assert final["state"] == "promoted"
    pause = next(e for e in events if e["type"] == "pause")
    assert pause["data"]["seconds"] == 3.0
    moved = {e["data"]["weight"]: e["t"] for e in events if e["type"] == "weight"}
    assert moved[100] - pause["t"] >= 3.0


def test_a_pause_without_duration_waits_for_an_operator(
    tmp_path: Path, redis_url: str, demo_service_factory: DemoFactory
) -> None:
    schedule = {"steps": [50, {"pause": {}}, 100], "step_interval": 1}
    path = _config(
        tmp_path, demo_service_factory("s").url, demo_service_factory("c").url, schedule=schedule
    )
    store = Store.from_url(redis_url)
    disp = InlineDispatcher(store)
    ctx = controller.Context(store=store, dispatcher=disp)
    cfg, txs = load_rollout(path)
    rec = controller.create(ctx, cfg, txs)
    runner = threading.Thread(target=disp.run, args=(ctx, 60))
    runner.start()
    deadline = time.time() + 30
    while (store.load_rollout(rec["id"]) or {}).get("state") != "paused" and time.time() < deadline:
        time.sleep(0.2)
    paused = store.load_rollout(rec["id"])
    assert paused is not None and paused["state"] == "paused" and paused["weight"] == 50
    store.push_control(rec["id"], "resume")
    runner.join(60)
    final = store.load_rollout(rec["id"])
    assert final is not None and final["state"] == "promoted"


def test_without_history_a_baseline_step_comes_before_any_traffic(
    tmp_path: Path, redis_url: str, demo_service_factory: DemoFactory
) -> None:
    schedule = {
        "initial_weight": 50,
        "step_weight": 50,
        "step_interval": 1,
        "isolated_check": False,
    }
    path = _config(
        tmp_path, demo_service_factory("s").url, demo_service_factory("c").url, schedule=schedule
    )
    first, _events, _ = _run(redis_url, path)
    assert first["baseline"] is True and first["weights"] == [0, 50, 100]
    assert first["state"] == "promoted"
    # The first rollout left stable history behind: the next one moves traffic at once.
    second, _events, _ = _run(redis_url, path)
    assert second["baseline"] is False and second["weights"] == [50, 100]
    assert second["state"] == "promoted"


def test_a_rollout_that_stops_moving_raises_one_stuck_alert(
    tmp_path: Path, redis_url: str, demo_service_factory: DemoFactory
) -> None:
    path = _config(tmp_path, demo_service_factory("s").url, demo_service_factory("c").url)
    store = Store.from_url(redis_url)
    cfg, txs = load_rollout(path)
    # Created, but no worker ever runs its tasks: nothing moves.
    rec = controller.create(
        controller.Context(store=store, dispatcher=InlineDispatcher(store)), cfg, txs
    )
    fresh = controller.Context(store=store, dispatcher=InlineDispatcher(store))
    assert controller.check_stuck(fresh) == []
    later = controller.Context(
        store=store, dispatcher=InlineDispatcher(store), now=lambda: time.time() + 600
    )
    assert controller.check_stuck(later) == [rec["id"]]
    controller.check_stuck(later)
    alerts = [e["data"] for _, e in store.read_events(rec["id"]) if e["type"] == "alert"]
    assert [a["kind"] for a in alerts] == ["stuck"]
    assert "no progress for" in alerts[0]["reasons"][0]
    # The alert names the likely cause, not a generic "are the workers running?".
    assert (
        "likely cause: no step ever started: is a control worker consuming"
        in (alerts[0]["reasons"][0])
    )


def test_a_broken_canary_is_rolled_back_by_an_interim_check_mid_step(
    tmp_path: Path, redis_url: str, demo_service_factory: DemoFactory
) -> None:
    interval = 30.0
    path = _config(
        tmp_path,
        demo_service_factory("s").url,
        demo_service_factory("c", error_rate=0.5).url,
        schedule={"initial_weight": 50, "step_weight": 50, "step_interval": interval},
        probes={"per_step": 60, "batch_size": 30, "concurrency": 4},
    )
    final, events, disp = _run(redis_url, path, interim=True)
    assert final["state"] == "rolled_back" and final["weight"] == 0
    assert final["judged"] == "s0a0" and final["reasons"][0].startswith("interim check ")
    decision = next(e for e in events if e["type"] == "decision")
    assert decision["data"]["action"] == "rollback" and decision["data"]["metrics"]["interim"]
    # Mid-step: before the step's end (how soon is scripts/bench-scale's to measure).
    assert decision["t"] < final["window_started_at"] + interval
    assert any(e["type"] == "alert" and e["data"]["kind"] == "rollback" for e in events)
    assert "rollback" in disp.checks
    # Batches still running were told by their next push and stopped probing.
    assert disp.batches and all(b.get("stopped_early") for b in disp.batches), disp.batches
    # The look-ahead that decided stays with the window, each probe slot once; the batches cut
    # short are accounted as missing, and the analysis at the step's end has nothing to do.
    store = Store.from_url(redis_url)
    acc = store.window_accounting(final["id"], "s0a0")
    assert acc["sealed"] and acc["missing"] == set(acc["expected"]) and not acc["recorded"]
    assert 0 < acc["lookahead"] == acc["results"] < sum(acc["expected"].values())
    assert final["canary_failures"] == sum(
        1 for r in store.window_results(final["id"], "s0a0") if r.version == "canary" and not r.ok
    )
    ctx = controller.Context(store=store, dispatcher=InlineDispatcher(store))
    assert controller.analyze(ctx, final["id"], "s0a0") == "stale"


def test_a_healthy_canary_passes_its_interim_checks(
    tmp_path: Path, redis_url: str, demo_service_factory: DemoFactory
) -> None:
    path = _config(
        tmp_path,
        demo_service_factory("s").url,
        demo_service_factory("c").url,
        schedule={"steps": [100], "step_interval": 7},
    )
    final, events, disp = _run(redis_url, path, interim=True)
    assert final["state"] == "promoted", final.get("reasons")
    # One look per window, 6 s into its 7 s, found nothing and left the rest to the analysis.
    assert disp.checks == ["ok", "ok"]
    decisions = [e["data"] for e in events if e["type"] == "decision"]
    assert [d["action"] for d in decisions] == ["increase", "promote"]
    assert not any(d["metrics"].get("interim") for d in decisions)
    store = Store.from_url(redis_url)
    for w in store.windows(final["id"]):
        # The judged results are the batch records, complete; the look-ahead the checks read
        # went with the seal, so a rollout keeps one window's look-ahead however long it runs.
        assert store.interim_results(final["id"], w) == []
        assert len(store.window_results(final["id"], w)) == 12 * 2 * len(TX)
        assert store.window_accounting(final["id"], w)["lookahead"] == 0


def test_a_step_boundary_is_one_task_the_analysis_starts_the_next_step(
    tmp_path: Path, redis_url: str, demo_service_factory: DemoFactory
) -> None:
    # Steps of rollouts that end together queued behind each other's hops: the analysis that
    # decides to go on sets the next weight and sends its batches itself, under its lock.
    url = demo_service_factory("s").url
    final, events, disp = _run(redis_url, _config(tmp_path, url, url))
    assert final["state"] == "promoted", final.get("reasons")
    steps = [e["data"] for e in events if e["type"] == "step"]
    assert len(steps) == len(final["weights"]) >= 2
    # Only the first step had a task of its own (sent by create).
    assert disp.advances == ["probing"]
    weights = [e["data"]["weight"] for e in events if e["type"] == "weight"]
    assert weights[: len(final["weights"])] == final["weights"]


class _Killed(BaseException):
    """The coordinator's process dying (kill -9) at a chosen point."""


def _killed_after_judging_s0a0(
    tmp_path: Path, redis_url: str, url: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Store, InlineDispatcher, controller.Context, str]:
    """A rollout whose coordinator died after judging window s0a0, before saving the record."""
    store = Store.from_url(redis_url)
    disp = InlineDispatcher(store)
    ctx = controller.Context(store=store, dispatcher=disp)
    cfg, txs = load_rollout(_config(tmp_path, url, url))
    rid = controller.create(ctx, cfg, txs)["id"]
    save = controller.outcome.save

    def dies_before_saving_a_judgement(ctx: Any, record: Any, **kw: Any) -> None:
        if record.judged == "s0a0":
            raise _Killed()
        save(ctx, record, **kw)

    monkeypatch.setattr(controller.outcome, "save", dies_before_saving_a_judgement)
    with pytest.raises(_Killed):
        disp.run(ctx)
    monkeypatch.setattr(controller.outcome, "save", save)
    return store, disp, ctx, rid


def test_a_coordinator_killed_between_seal_and_save_is_judged_again_on_redelivery(
    tmp_path: Path,
    redis_url: str,
    demo_service_factory: DemoFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The analysis seals its window, judges it (tells the decision, adds the stable results to
    # the service's history), starts the next step and only then saves the record: a kill in
    # between leaves the window sealed and the record still on it. The task comes back (late
    # acknowledgement) and must judge the window again, not take the seal for a judgement and
    # leave the rollout stuck for good; and it must neither add those results nor tell the
    # decision a second time.
    url = demo_service_factory("s").url
    store, disp, ctx, rid = _killed_after_judging_s0a0(tmp_path, redis_url, url, monkeypatch)
    assert store.is_sealed(rid, "s0a0")
    record = store.load_rollout(rid) or {}
    assert record.get("window") == "s0a0"
    service, names = record["service"], [t["transaction_name"] for t in record["transactions"]]

    def history() -> int:  # Redis is emptied before each test: all of it is this rollout's
        return sum(store.history_size(service, n) for n in names)

    stable = [r for r in store.window_results(rid, "s0a0") if r.version == "stable"]
    assert history() == len(stable) > 0
    disp.queue.clear()  # only the re-judge: what the dead task had sent is beside the point
    disp.analyze(rid, "s0a0", 0)  # the unacknowledged task, handed out again
    disp.run(ctx, until=lambda: (store.load_rollout(rid) or {}).get("judged") == "s0a0")
    record = store.load_rollout(rid) or {}
    assert record.get("judged") == "s0a0"
    assert history() == len(stable)
    told = [
        e["data"]
        for _, e in store.read_events(rid)
        if e["type"] == "decision" and e["data"]["window"] == "s0a0"
    ]
    assert len(told) == 1, told
    # The record holds the decision the event told.
    assert [d["action"] for d in record["decisions"] if d["window"] == "s0a0"] == [
        told[0]["action"]
    ]
    disp.run(ctx)  # and the rollout goes on to its end
    final = store.load_rollout(rid)
    assert final is not None and final["state"] == "promoted", final
    assert store.windows(rid)[0] == "s0a0"


def test_only_the_sequential_engine_gets_interim_checks(
    tmp_path: Path, redis_url: str, demo_service_factory: DemoFactory
) -> None:
    store = Store.from_url(redis_url)
    url = demo_service_factory("s").url
    schedule = {"initial_weight": 50, "step_weight": 50, "step_interval": 30}
    for judge, checked in (("sequential", True), ("threshold", False)):
        analysis = {"judge": judge, "max_holds": 1, "min_samples": 10}
        # One service per judge: a service has one running rollout at a time.
        cfg, txs = load_rollout(
            _config(tmp_path, url, url, name=f"t-{judge}", schedule=schedule, analysis=analysis)
        )
        disp = InlineDispatcher(store)
        ctx = controller.Context(store=store, dispatcher=disp)
        rec = controller.create(ctx, cfg, txs)
        assert controller.advance(ctx, rec["id"], 0, 0) == "probing"
        kinds = [(kind, args) for _, _, kind, args in disp.queue]
        batches = [args[0] for kind, args in kinds if kind == "probe"]
        checks = [args for kind, args in kinds if kind == "check"]
        assert all(("flush_s" in b) is checked for b in batches), judge
        assert checks == ([(rec["id"], "s0a0")] if checked else []), judge
        # A check that comes after its window's interval leaves the window to the analysis.
        late = controller.Context(
            store=store, dispatcher=InlineDispatcher(store), now=lambda: time.time() + 31
        )
        assert controller.check(late, rec["id"], "s0a0") == "stale"
        assert controller.check(ctx, rec["id"], "s9a0") == "stale"


# --- plugins that raise, commands, one rollout per service -----------------------------------


class _BuggyRouter:
    """A router plugin with a bug: ``set_weight`` of a non-zero weight raises a TypeError.

    ``rollback_too`` breaks its rollback as well; every call is appended to ``calls``.
    """

    name = "buggy"
    calls: list[str] = []

    class Options(PluginOptions):
        rollback_too: bool = False

    def __init__(self, rollback_too: bool = False) -> None:
        self.rollback_too = rollback_too

    def set_weight(self, weight: int, ctx: Any) -> None:
        self.calls.append(f"set_weight {weight}")
        if weight:
            raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")

    def verify_weight(self, weight: int, ctx: Any) -> bool | None:
        return None

    def promote(self, ctx: Any) -> None:
        self.calls.append("promote")

    def rollback(self, ctx: Any) -> None:
        self.calls.append("rollback")
        if self.rollback_too:
            raise KeyError("backend")


class _BuggyNotifier:
    """A notifier plugin whose options crash it when built (``url: 12``) or when it sends."""

    name = "buggy"

    class Options(PluginOptions):
        # Any on purpose: the bug under test is one that load-time checks do not catch.
        url: Any = None

    def __init__(self, url: Any = None) -> None:
        if not isinstance(url, str):
            raise AttributeError("'int' object has no attribute 'decode'")

    def send(self, alert: Any) -> None:
        raise AttributeError("'NoneType' object has no attribute 'post'")


def _buggy_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    from canary.notifiers import NOTIFIERS
    from canary.routers import ROUTERS

    monkeypatch.setitem(ROUTERS, "buggy", _BuggyRouter)
    monkeypatch.setitem(NOTIFIERS, "buggy", _BuggyNotifier)
    _BuggyRouter.calls = []


def _buggy_run(
    tmp_path: Path,
    redis_url: str,
    demo: DemoFactory,
    monkeypatch: pytest.MonkeyPatch,
    router: dict[str, Any],
    notifiers: list[dict[str, Any]],
) -> tuple[dict[str, Any], list[dict[str, Any]], Path]:
    """Run a rollout to its end with the buggy plugins; returns its record, events and file."""
    _buggy_plugins(monkeypatch)
    path = _config(tmp_path, demo("s").url, demo("c").url, router=router, notifiers=notifiers)
    final, events, _ = _run(redis_url, path)
    return final, events, path


def test_a_router_that_raises_anything_ends_the_rollout_on_stable(
    tmp_path: Path,
    redis_url: str,
    demo_service_factory: DemoFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    notifiers = [{"type": "buggy", "url": 12}, {"type": "buggy", "url": "http://x"}]
    final, events, _ = _buggy_run(
        tmp_path, redis_url, demo_service_factory, monkeypatch, {"type": "buggy"}, notifiers
    )
    assert final["state"] == "failed" and final["weight"] == 0
    assert _BuggyRouter.calls == ["set_weight 0", "set_weight 50", "rollback"]
    assert any("TypeError" in r and "set weight 50%" in r for r in final["reasons"])
    # The notifiers' crashes are failed channels in the alert's event, not a stuck rollout.
    alert = next(
        e["data"] for e in events if e["type"] == "alert" and e["data"]["kind"] == "failure"
    )
    assert len(alert["failed_channels"]) == 2, alert
    assert events[-1]["type"] == "state"


def test_a_router_that_cannot_roll_back_still_ends_the_rollout(
    tmp_path: Path,
    redis_url: str,
    demo_service_factory: DemoFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    router = {"type": "buggy", "rollback_too": True}
    final, _events, path = _buggy_run(
        tmp_path,
        redis_url,
        demo_service_factory,
        monkeypatch,
        router,
        [{"type": "buggy", "url": 12}],
    )
    assert final["state"] == "failed"
    assert any("failed to roll back" in r and "KeyError" in r for r in final["reasons"])
    # And a fail-safe of a running rollout with those plugins ends it too.
    store = Store.from_url(redis_url)
    cfg, txs = load_rollout(path)
    ctx = controller.Context(store=store, dispatcher=InlineDispatcher(store))
    rec = controller.create(ctx, cfg, txs)
    controller.fail_safe(ctx, rec["id"], "coordinator crashed")
    ended = store.load_rollout(rec["id"])
    assert ended is not None and ended["state"] == "failed"
    assert ended["reasons"][0] == "coordinator crashed"


def _prepared(
    tmp_path: Path, redis_url: str, demo: DemoFactory
) -> tuple[Store, controller.Context, Any, list[dict[str, Any]]]:
    """A store, a context with an inline dispatcher, and a loaded healthy rollout file."""
    path = _config(tmp_path, demo("s").url, demo("c").url)
    store = Store.from_url(redis_url)
    ctx = controller.Context(store=store, dispatcher=InlineDispatcher(store))
    cfg, txs = load_rollout(path)
    return store, ctx, cfg, txs


def test_a_second_rollout_of_a_service_is_refused_unless_it_replaces(
    tmp_path: Path, redis_url: str, demo_service_factory: DemoFactory
) -> None:
    store, ctx, cfg, txs = _prepared(tmp_path, redis_url, demo_service_factory)
    first = controller.create(ctx, cfg, txs)
    with pytest.raises(ConfigError, match=f"already has rollout {first['id']} running"):
        controller.create(ctx, cfg, txs)
    second = controller.create(ctx, cfg, txs, replace=True)
    old = store.load_rollout(first["id"])
    assert old is not None and old["state"] == "aborted" and old["replaced_by"] == second["id"]
    assert second["replaces"] == first["id"]
    assert store.service_holder(cfg.service_name) == second["id"]
    # Once it ends the service is free again.
    controller.fail_safe(ctx, second["id"], "done")
    assert store.service_holder(cfg.service_name) is None
    third = controller.create(ctx, cfg, txs)
    assert third["state"] == "running"


def test_abort_wins_over_a_promote_that_came_with_it_and_both_are_answered(
    tmp_path: Path, redis_url: str, demo_service_factory: DemoFactory
) -> None:
    store, ctx, cfg, txs = _prepared(tmp_path, redis_url, demo_service_factory)
    rid = controller.create(ctx, cfg, txs)["id"]
    store.push_control(rid, "promote", command_id="p1")
    assert operator.command(ctx, rid, "abort", "a1") == "applied"
    assert "abort" in (store.command_answer(rid, "p1") or "")
    final = store.load_rollout(rid)
    assert final is not None and final["state"] == "aborted"
    commands = [e["data"] for _, e in store.read_events(rid) if e["type"] == "command"]
    assert {c["command"]: c["result"] for c in commands}["abort"] == "applied"
    assert operator.command(ctx, rid, "promote", "p2").startswith(
        "not applied: the rollout already ended"
    )


def test_traffic_never_moves_while_stable_is_unhealthy_and_the_alert_goes_once(
    tmp_path: Path,
    redis_url: str,
    demo_service_factory: DemoFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from canary.analysis.decision import Decision
    from canary.analysis.judge import JUDGES, ScriptedJudge

    sick = ["stable is unhealthy: stable success 40.0% (8/20) vs its history 100.0%"]
    judge = ScriptedJudge(
        [
            Decision("hold", sick, alerts=["stable_unhealthy"]),
            Decision("increase", sick, alerts=["stable_unhealthy"]),  # must not move traffic
            Decision("increase", ["all within tolerance"]),
            Decision("increase", ["all within tolerance"]),
            Decision("promote", ["all within tolerance"]),
        ]
    )
    monkeypatch.setitem(JUDGES, "scripted", lambda: judge)
    path = _config(
        tmp_path,
        demo_service_factory("s").url,
        demo_service_factory("c").url,
        analysis={"judge": "scripted", "max_holds": 5, "min_samples": 10},
    )
    final, events, _ = _run(redis_url, path)
    assert final["state"] == "promoted", final.get("reasons")
    decisions = [
        (e["data"]["weight"], e["data"]["action"]) for e in events if e["type"] == "decision"
    ]
    assert decisions == [
        (0, "hold"),
        (0, "hold"),
        (0, "increase"),
        (50, "increase"),
        (100, "promote"),
    ]
    held = [e["data"] for e in events if e["type"] == "decision"][1]
    assert "traffic does not move while stable is unhealthy" in held["reasons"][-1]
    alerts = [
        e["data"]
        for e in events
        if e["type"] == "alert" and e["data"]["kind"] == "stable_unhealthy"
    ]
    assert len(alerts) == 1 and alerts[0]["reasons"][0].startswith("stable is unhealthy: ")
    assert [e["data"]["weight"] for e in events if e["type"] == "weight"] == [0, 0, 0, 50, 100]


def test_a_dry_run_records_what_the_judge_would_do_and_never_rolls_back(
    tmp_path: Path,
    redis_url: str,
    demo_service_factory: DemoFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from canary.analysis.decision import Decision
    from canary.analysis.judge import JUDGES, ScriptedJudge

    judge = ScriptedJudge([Decision("rollback", ["checkout: canary success 40.0% (8/20)"])])
    monkeypatch.setitem(JUDGES, "scripted", lambda: judge)
    path = _config(
        tmp_path,
        demo_service_factory("s").url,
        demo_service_factory("c", error_rate=0.6).url,
        analysis={"judge": "scripted", "dry_run": True, "max_holds": 1, "min_samples": 10},
    )
    final, events, _ = _run(redis_url, path)
    assert final["state"] == "promoted"
    assert [e["data"]["weight"] for e in events if e["type"] == "weight"] == [0, 50, 100]
    decisions = [e["data"] for e in events if e["type"] == "decision"]
    assert [d["action"] for d in decisions] == ["increase", "increase", "promote"]
    assert all(d["metrics"]["would"] == "rollback" and d["metrics"]["dry_run"] for d in decisions)
    assert decisions[0]["reasons"] == [
        "dry run: the analysis would roll back here: checkout: canary success 40.0% (8/20)"
    ]


def _one_service(tmp: Path, factory: DemoFactory, **schedule: Any) -> Path:
    """A rollout whose stable and canary are one healthy demo service, on ``schedule``."""
    url = factory("s").url
    return _config(tmp, url, url, schedule=schedule)


def _count_opens(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How often a judge is rebuilt from a saved state (what a kept copy saves a task)."""
    opened: list[int] = []
    real = AnalysisEngine.from_state.__func__  # type: ignore[attr-defined]

    def counting(cls: type[AnalysisEngine], state: dict[str, Any]) -> AnalysisEngine:
        opened.append(1)
        return real(cls, state)  # type: ignore[no-any-return]

    monkeypatch.setattr(AnalysisEngine, "from_state", classmethod(counting))
    return opened


def test_step_ends_keep_the_judge_in_memory_and_never_use_a_stale_copy(
    tmp_path: Path,
    redis_url: str,
    demo_service_factory: DemoFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = _one_service(tmp_path, demo_service_factory, steps=[25, 50, 75, 100], step_interval=1)
    opened = _count_opens(monkeypatch)
    store = Store.from_url(redis_url)
    disp = InlineDispatcher(store)
    ctx = controller.Context(store=store, dispatcher=disp)
    cfg, txs = load_rollout(path)
    rid = controller.create(ctx, cfg, txs)["id"]

    def judged(window: str) -> Callable[[], bool]:
        return lambda: (store.load_rollout(rid) or {}).get("judged") == window

    disp.run(ctx, until=judged("s1a0"))
    # Each step end went on with the copy it saved: none was rebuilt from Redis.
    assert opened == []
    etag = store.r.get(store.keys.engine_etag(rid))
    assert etag == str((store.load_rollout(rid) or {})["fence"])
    # Another control process judged meanwhile and saved a newer state: the kept copy is stale.
    other = AnalysisEngine.from_state(store.load_engine(rid) or {})
    other.failure_offset = 7
    with store.lock(rid) as fence:
        record = store.load_record(rid)
        assert record is not None and fence is not None
        record.fence = fence
        assert store.save_record(record, engine=other.to_state())
    opened.clear()
    disp.run(ctx)
    final = store.load_rollout(rid)
    assert final is not None and final["state"] == "promoted", final
    assert len(opened) == 1  # the next step end read the newer state, once
    assert (store.load_engine(rid) or {})["failure_offset"] == 7


class _Quiet:
    """A dispatcher that sends nothing: the test plays the probe workers itself."""

    def probe(self, batches: Sequence[BatchSpec], queue: str) -> None: ...

    def analyze(self, rollout_id: str, window: str, countdown: float) -> None: ...

    def check(self, rollout_id: str, window: str, countdown: float) -> None: ...

    def advance(self, rollout_id: str, step: int, attempt: int, countdown: float) -> None: ...


def test_a_windows_checks_feed_one_judge_and_never_look_with_a_stale_one(
    tmp_path: Path,
    redis_url: str,
    demo_service_factory: DemoFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from canary.probing.result import TransactionResult

    path = _one_service(tmp_path, demo_service_factory, steps=[50, 100], step_interval=60)
    store = Store.from_url(redis_url)
    ctx = controller.Context(store=store, dispatcher=_Quiet())
    cfg, txs = load_rollout(path)
    rid = controller.create(ctx, cfg, txs)["id"]
    assert controller.advance(ctx, rid, 0, 0) == "probing"
    record = store.load_record(rid)
    assert record is not None and record.window == "s0a0"
    names = record.transaction_names
    engine = AnalysisEngine(record.slo, None, names, t0=record.window_started_at or 0.0)
    with store.lock(rid) as fence:
        record.fence = fence or 0
        assert store.save_record(record, engine=engine.to_state())
    t = time.time()

    def push(k: int) -> None:
        runs = [
            (f"s0a0.{x}.0:{k}:{v}", TransactionResult(t + k, v, x, True, 20.0, 200))
            for x in names
            for v in ("stable", "canary")
        ]
        assert store.record_interim(rid, "s0a0", runs) == len(runs)

    opened = _count_opens(monkeypatch)
    for k in range(3):
        push(k)
        assert controller.check(ctx, rid, "s0a0", chain=False) == "ok"
    # Three looks, one judge opened on the window's state and fed each look's pushes.
    assert len(opened) == 1
    # A newer state is saved (another process, say): a check never looks with the old copy.
    spent = engine.to_state()
    spent["failure_offset"] = 10**6
    spent["slo"] = {**spent["slo"], "rollback_on_error_budget": True}
    with store.lock(rid) as fence:
        record.fence = fence or 0
        assert store.save_record(record, engine=spent)
    push(3)
    assert controller.check(ctx, rid, "s0a0", chain=False) == "rollback"
    assert len(opened) == 2
    final = store.load_rollout(rid)
    assert final is not None and final["state"] == "rolled_back"
    assert "error budget spent" in " ".join(final["reasons"])


@dataclass
class _Recording(_Quiet):
    """Sends nothing, and remembers the batches and the advances it was asked for."""

    probes: list[BatchSpec] = field(default_factory=list)
    advances: list[tuple[str, int, int, float]] = field(default_factory=list)

    def probe(self, batches: Sequence[BatchSpec], queue: str) -> None:
        self.probes.extend(batches)

    def advance(self, rollout_id: str, step: int, attempt: int, countdown: float) -> None:
        self.advances.append((rollout_id, step, attempt, countdown))


def test_a_step_judged_before_its_end_moves_traffic_when_it_is_due(
    tmp_path: Path, redis_url: str, demo_service_factory: DemoFactory
) -> None:
    from canary.probing.result import TransactionResult
    from canary.rollout.windows import end_margin

    interval = 30.0
    path = _one_service(tmp_path, demo_service_factory, steps=[50, 100], step_interval=interval)
    store = Store.from_url(redis_url)
    disp = _Recording()
    ctx = controller.Context(store=store, dispatcher=disp)
    cfg, txs = load_rollout(path)
    rid = controller.create(ctx, cfg, txs)["id"]
    disp.advances.clear()
    assert controller.advance(ctx, rid, 0, 0) == "probing"
    record = store.load_record(rid)
    assert record is not None and record.window is not None
    # The step's probes end a margin before the step does, so it can be judged by its end.
    assert {b.spread_s for b in disp.probes} == {interval - end_margin(interval)}
    t = time.time()
    for b in disp.probes:
        runs = [
            TransactionResult(t + k * 0.1, v, b.transaction, True, 20.0, 200)
            for k in range(b.count)
            for v in ("stable", "canary")
        ]
        assert store.record_batch(rid, record.window, b.batch_id, runs)
    # The last batch recorded wakes the analysis: it judges now, and sends the next step for
    # the end of this one rather than moving traffic early.
    assert controller.analyze(ctx, rid, record.window) in ("increase", "hold")
    [(got, step, attempt, countdown)] = disp.advances
    due = (record.window_started_at or 0.0) + interval
    assert got == rid and countdown == pytest.approx(due - time.time(), abs=2.0)
    weights = [e["data"]["weight"] for _, e in store.read_events(rid) if e["type"] == "weight"]
    assert weights == [record.weight]
    # When due, that task moves the traffic and starts the next window.
    assert controller.advance(ctx, rid, step, attempt) == "probing"
    moved = store.load_record(rid)
    assert moved is not None and moved.window != record.window
    assert moved.weight == moved.weights[step]
