"""run_batch's delivery rules with real Redis and a real demo service, in this process.

Claims keep a re-delivered batch from probing twice, a sealed window refuses late batches,
the last batch recorded wakes the analysis, and big batches record in one piece.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from canary.fleet import CLAIM_TTL_S, run_batch
from canary.probing.result import TransactionResult
from canary.rollout import controller
from canary.rollout.config import load_rollout
from canary.store import Store
from tests.fixtures.services import DemoFactory
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
