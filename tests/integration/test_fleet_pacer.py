"""The probe pacer with real Redis and real demo services, in this process.

A probe that cannot start near its time is dropped and counted, not fired in a burst; a step
probed too thinly holds and alerts instead of being judged; a failed canary run is pushed at
once and asks for an interim check, rate-limited (less while every canary run fails); such a one-off check does not start a second
chain of checks.
"""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path
from typing import Any

from canary.fleet import FAST_WAKE_GAP_S, WAKE_GAP_S, run_batch
from canary.rollout import controller
from canary.rollout.config import load_rollout
from canary.store import Store
from tests.fixtures.services import DemoFactory
from tests.integration.test_controller import InlineDispatcher, _config


def _dispatched(
    tmp_path: Path, redis_url: str, stable: str, canary: str, **over: Any
) -> tuple[controller.Context, InlineDispatcher, dict[str, Any], list[dict[str, Any]]]:
    """A rollout whose first window was dispatched (batches captured, not run)."""
    store = Store.from_url(redis_url)
    disp = InlineDispatcher(store)
    ctx = controller.Context(store=store, dispatcher=disp)
    cfg, txs = load_rollout(_config(tmp_path, stable, canary, **over))
    rec = controller.create(ctx, cfg, txs)
    disp.queue.clear()
    assert controller.advance(ctx, rec["id"], 0, 0) == "probing"
    batches = [args[0] for _, _, kind, args in disp.queue if kind == "probe"]
    record = store.load_rollout(rec["id"])
    assert record is not None and batches
    return ctx, disp, record, batches


def _long_step(
    tmp_path: Path, redis_url: str, demo: DemoFactory
) -> tuple[controller.Context, InlineDispatcher, dict[str, Any], list[dict[str, Any]]]:
    """``_dispatched`` with healthy versions and 60 s steps (long enough to look inside)."""
    schedule = {"initial_weight": 50, "step_weight": 50, "step_interval": 60}
    return _dispatched(tmp_path, redis_url, demo("s").url, demo("c").url, schedule=schedule)


def test_probes_too_late_to_start_are_dropped_and_counted_not_fired_in_a_burst(
    tmp_path: Path, redis_url: str, demo_service_factory: DemoFactory
) -> None:
    demo = demo_service_factory
    ctx, _, record, batches = _dispatched(tmp_path, redis_url, demo("s").url, demo("c").url)
    # Delivered 8 s into a 10 s spread: the runs due in its first seconds cannot be made up.
    b = {**batches[0], "count": 10, "slot": 0, "slots": 1, "series_size": 10, "spread_s": 10.0}
    b["start_at"] = time.time() - 8.0
    out = run_batch(ctx.store, b)
    assert out["recorded"], out
    planned = 2 * b["count"]
    assert 0 < out["late"] < planned and out["runs"] + out["late"] == planned
    meta = ctx.store.window_accounting(record["id"], b["window"])["meta"][b["batch_id"]]
    assert meta["planned"] == planned and meta["late"] == out["late"]
    assert meta["runs"] == len(ctx.store.window_results(record["id"], b["window"]))


def test_a_step_probed_too_thinly_holds_and_alerts_instead_of_moving_on(
    tmp_path: Path, redis_url: str, demo_service_factory: DemoFactory
) -> None:
    ctx, _, record, batches = _long_step(tmp_path, redis_url, demo_service_factory)
    # Every batch reaches a worker 57 s into its 60 s step (a fleet short of capacity).
    for b in batches:
        out = run_batch(ctx.store, {**b, "start_at": time.time() - 57.0})
        assert out["recorded"] and out["late"], out
    assert controller.analyze(ctx, record["id"], "s0a0") == "hold"
    events = [e for _, e in ctx.store.read_events(record["id"])]
    decision = [e["data"] for e in events if e["type"] == "decision"][-1]
    assert (
        decision["reasons"][0].startswith("probed ")
        and "add probe workers" in (decision["reasons"][0])
    ), decision
    assert decision["metrics"]["probed_share"] < 0.5
    alerts = [e["data"] for e in events if e["type"] == "alert"]
    assert [a["kind"] for a in alerts] == ["starved"], alerts
    final = ctx.store.load_rollout(record["id"])
    assert final is not None and (final["step"], final["attempt"]) == (0, 1)


def test_a_failed_canary_run_is_pushed_at_once_and_wakes_a_check(
    tmp_path: Path, redis_url: str, demo_service_factory: DemoFactory
) -> None:
    demo = demo_service_factory
    ctx, _, record, batches = _dispatched(
        tmp_path, redis_url, demo("s").url, demo("c", error_rate=1.0).url
    )
    # Pushes on the grid only every 60 s: whatever arrives before comes from the failure.
    b = {**batches[0], "start_at": time.time(), "spread_s": 4.0, "flush_s": 60.0}
    wakes: list[tuple[float, float, int]] = []
    seen = threading.Event()

    def wake(countdown: float) -> None:
        failed = [
            r
            for r in ctx.store.interim_results(record["id"], b["window"])
            if r.version == "canary" and not r.ok
        ]
        wakes.append((time.time(), countdown, len(failed)))
        seen.set()

    out: list[dict[str, Any]] = []
    thread = threading.Thread(target=lambda: out.append(run_batch(ctx.store, b, on_failure=wake)))
    thread.start()
    assert seen.wait(30), "no check was asked for"
    assert not out, "the check came only once the batch had finished"
    thread.join(30)
    assert out and out[0]["recorded"], out
    # Each request comes after its failure was pushed, and they are rate-limited; while every
    # canary run fails (a hard failure), faster than once a second: each probe (every 0.67 s
    # here) wakes a check, rather than one a second that lags the evidence.
    assert wakes and all(n > 0 for _, _, n in wakes), wakes
    due = [at + countdown for at, countdown, _ in wakes]
    gaps = [b2 - b1 for b1, b2 in itertools.pairwise(due)]
    assert gaps and all(g >= FAST_WAKE_GAP_S - 0.01 for g in gaps), due
    assert min(gaps) < WAKE_GAP_S - 0.1, gaps


def test_a_check_asked_for_by_a_worker_does_not_start_a_second_chain(
    tmp_path: Path, redis_url: str, demo_service_factory: DemoFactory
) -> None:
    ctx, disp, record, _ = _long_step(tmp_path, redis_url, demo_service_factory)

    def checks() -> int:
        return sum(1 for _, _, kind, _ in disp.queue if kind == "check")

    before = checks()
    assert controller.check(ctx, record["id"], "s0a0", chain=False) == "ok"
    assert checks() == before
    assert controller.check(ctx, record["id"], "s0a0") == "ok"
    assert checks() == before + 1


def test_checks_of_a_first_window_read_the_stable_history_once(
    tmp_path: Path, redis_url: str, demo_service_factory: DemoFactory
) -> None:
    ctx, _, record, _ = _long_step(tmp_path, redis_url, demo_service_factory)
    reads: list[str] = []

    class CountingStore(Store):
        def history(self, service: str, transaction: str, **kw: Any) -> list[Any]:
            reads.append(transaction)
            return super().history(service, transaction, **kw)

    counting = controller.Context(
        store=CountingStore(ctx.store.r, ctx.store.keys), dispatcher=ctx.dispatcher
    )
    assert controller.check(counting, record["id"], "s0a0", chain=False) == "ok"
    first = len(reads)
    assert first == len(record["transactions"])
    assert controller.check(counting, record["id"], "s0a0", chain=False) == "ok"
    assert len(reads) == first
