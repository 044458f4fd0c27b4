"""run_batch's delivery rules with real Redis and a real demo service, in this process.

Claims keep a re-delivered batch from probing twice, a sealed window refuses late batches,
the last batch recorded wakes the analysis, big batches record in one piece, and a running batch
pushes its results ahead of its record for the interim checks, best effort.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from canary.errors import StoreError
from canary.fleet import CLAIM_TTL_S, run_batch
from canary.probing.result import TransactionResult
from canary.rollout import controller
from canary.rollout.config import load_rollout
from canary.store import Store
from tests.fixtures.services import DemoFactory
from tests.fixtures.waits import wait_until
from tests.integration.test_controller import InlineDispatcher, _config


def _setup(
    tmp_path: Path, redis_url: str, demo: DemoFactory
) -> tuple[Store, dict[str, Any], list[dict[str, Any]]]:
    """A rollout whose first window was dispatched (batches captured, not run)."""
    path = _config(tmp_path, demo("s").url, demo("c").url)
    store = Store.from_url(redis_url)
    disp = InlineDispatcher(store)
    ctx = controller.Context(store=store, dispatcher=disp)
    cfg, txs = load_rollout(path)
    rec = controller.create(ctx, cfg, txs)
    assert controller.advance(ctx, rec["id"], 0, 0) == "probing"
    batches = [args[0] for _, _, kind, args in disp.queue if kind == "probe"]
    for b in batches:
        b["start_at"], b["spread_s"] = time.time(), 0.0
    record = store.load_rollout(rec["id"])
    assert record is not None
    return store, record, batches


def test_last_batch_wakes_the_analysis_once(
    tmp_path: Path, redis_url: str, demo_service_factory: DemoFactory
) -> None:
    store, record, batches = _setup(tmp_path, redis_url, demo_service_factory)
    woken: list[str] = []
    for b in batches:
        out = run_batch(store, b, on_complete=lambda b=b: woken.append(b["batch_id"]))
        assert out["recorded"], out
    assert woken == [batches[-1]["batch_id"]]
    # A duplicate neither records nor wakes anything.
    assert run_batch(store, batches[0], on_complete=lambda: woken.append("dup"))["skipped"]
    assert woken == [batches[-1]["batch_id"]]
    acc = store.window_accounting(record["id"], "s0a0")
    assert acc["results"] == sum(acc["expected"].values())
    assert {m["environment"] for m in acc["meta"].values()} == {"default"}


def test_a_copy_defers_while_the_first_runner_holds_the_batch(
    tmp_path: Path, redis_url: str, demo_service_factory: DemoFactory
) -> None:
    store, record, batches = _setup(tmp_path, redis_url, demo_service_factory)
    b = batches[0]
    assert store.claim_batch(record["id"], "s0a0", b["batch_id"], "other-runner", CLAIM_TTL_S)
    out = run_batch(store, b, defer=True)
    assert out["deferred"] and out["check_by"] > time.time()
    assert store.window_accounting(record["id"], "s0a0")["results"] == 0
    # Once the first runner's claim is gone (it died), the copy takes the batch over.
    store.r.delete(store.keys.claim(record["id"], "s0a0", b["batch_id"]))
    assert run_batch(store, b, defer=True)["recorded"]


def test_a_sealed_window_refuses_late_batches_and_accounts_them(
    tmp_path: Path, redis_url: str, demo_service_factory: DemoFactory
) -> None:
    store, record, batches = _setup(tmp_path, redis_url, demo_service_factory)
    assert run_batch(store, batches[0])["recorded"]
    expected = sorted(store.window_accounting(record["id"], "s0a0")["expected"])
    done = store.seal_window(record["id"], "s0a0", expected)
    assert done == {batches[0]["batch_id"]}
    assert run_batch(store, batches[1])["skipped"]
    acc = store.window_accounting(record["id"], "s0a0")
    assert acc["missing"] == set(expected) - done
    assert acc["results"] == acc["expected"][batches[0]["batch_id"]]


def test_large_batches_record_atomically(redis_url: str) -> None:
    store = Store.from_url(redis_url)
    results = [
        TransactionResult(t=float(i), version="stable", transaction="t", ok=True, latency_ms=1.0)
        for i in range(25_000)
    ]
    assert store.record_batch_status("r", "s0a0", "b0", results, meta={"host": "h"}) == 1
    assert store.record_batch_status("r", "s0a0", "b0", results) == 0
    acc = store.window_accounting("r", "s0a0")
    assert acc["results"] == 25_000 and acc["meta"] == {"b0": {"host": "h"}}


def _run_in_thread(store: Store, batch: dict[str, Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(run_batch(store, batch)))
    thread.start()
    return thread, out


def test_a_running_batch_pushes_its_results_ahead_of_its_record(
    tmp_path: Path, redis_url: str, demo_service_factory: DemoFactory
) -> None:
    store, record, batches = _setup(tmp_path, redis_url, demo_service_factory)
    b = {**batches[0], "start_at": time.time(), "spread_s": 3.0, "flush_s": 1.0}
    thread, out = _run_in_thread(store, b)
    wait_until("a first push", lambda: store.interim_results(record["id"], "s0a0"))
    assert store.window_results(record["id"], "s0a0") == []
    thread.join(60)
    assert out and out[0]["recorded"], out
    # Keyed by probe slot: the batch's id, the probe's index, the version.
    ids = store.r.hkeys(store.keys.interim(record["id"], "s0a0"))
    assert {i.rsplit(":", 2)[0] for i in ids} == {b["batch_id"]}
    assert {i.rsplit(":", 1)[1] for i in ids} == {"stable", "canary"}
    assert {int(i.split(":")[-2]) for i in ids} <= set(range(b["count"]))
    # The record is the truth; the look-ahead is a copy of (part of) it.
    official = {(r.t, r.version) for r in store.window_results(record["id"], "s0a0")}
    pushed = {(r.t, r.version) for r in store.interim_results(record["id"], "s0a0")}
    assert len(official) == 2 * b["count"] and pushed <= official


def test_a_batch_stops_probing_once_its_window_was_judged_early(
    tmp_path: Path, redis_url: str, demo_service_factory: DemoFactory
) -> None:
    store, record, batches = _setup(tmp_path, redis_url, demo_service_factory)
    started = time.time()
    b = {**batches[0], "start_at": started, "spread_s": 20.0, "flush_s": 1.0}
    thread, out = _run_in_thread(store, b)
    wait_until("a first push", lambda: store.interim_results(record["id"], "s0a0"))
    store.seal_window(record["id"], "s0a0", [b["batch_id"]], keep_lookahead=True)
    thread.join(60)  # a ceiling: left alone, the batch would take its whole 20 s
    assert out and out[0]["stopped_early"] and out[0]["skipped"].startswith("refused"), out
    # It stopped at the seal rather than running its series to the end.
    assert out[0]["runs"] < 2 * b["count"], out
    # What it had pushed before the seal is kept with the window; nothing after it.
    acc = store.window_accounting(record["id"], "s0a0")
    assert acc["missing"] == {b["batch_id"]} and 0 < acc["lookahead"] == acc["results"]


def test_a_failing_push_never_fails_the_batch(
    tmp_path: Path, redis_url: str, demo_service_factory: DemoFactory
) -> None:
    store, record, batches = _setup(tmp_path, redis_url, demo_service_factory)

    class RedisAwayForPushes(Store):
        def record_interim(self, *args: Any, **kwargs: Any) -> int:
            raise StoreError("Redis is away")

    flaky = RedisAwayForPushes(store.r, store.keys)
    b = {**batches[0], "start_at": time.time(), "spread_s": 1.5, "flush_s": 0.5}
    out = run_batch(flaky, b)
    assert out["recorded"] and "stopped_early" not in out, out
    assert len(store.window_results(record["id"], "s0a0")) == 2 * b["count"]
