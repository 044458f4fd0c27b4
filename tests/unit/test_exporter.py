"""What the exporter's collector yields from what the store holds, on a real Redis."""

from __future__ import annotations

import time

from prometheus_client.core import Metric

from canary.exporter import LATENCY_BUCKETS, RolloutCollector
from canary.probing.result import TransactionResult
from canary.store import Store

Samples = dict[tuple[str, ...], float]


def _rollout(store: Store, rid: str, window: str = "s1a0") -> list[str]:
    """A running rollout of service ``shop`` on ``window``; returns its base labels."""
    store.create_rollout(
        {
            "id": rid,
            "name": "shop",
            "service": "shop",
            "created_at": time.time(),
            "config": {"stable": {"version": "1.0.0"}, "canary": {"version": "1.1.0"}},
            "weights": [0, 20, 100],
            "state": "running",
            "step": 1,
            "attempt": 0,
            "weight": 20,
            "window": window,
            "fence": 0,
        }
    )
    store.add_window(rid, window)
    return [rid, "shop"]


def _collect(store: Store) -> dict[str, Metric]:
    return {family.name: family for family in RolloutCollector(store).collect()}


def _samples(family: Metric) -> Samples:
    return {(s.name, *s.labels.values()): s.value for s in family.samples}


def test_window_latency_histogram_is_cumulative_and_in_seconds(redis_url: str) -> None:
    store = Store.from_url(redis_url)
    rid, svc = _rollout(store, "r1")
    now = time.time()
    results = [
        TransactionResult(now, "canary", "browse", ms < 10_000, ms)
        for ms in (5.0, 30.0, 30.0, 700.0, 20_000.0)
    ]
    store.record_batch(rid, "s1a0", "b1", results)

    families = _collect(store)

    assert _samples(families["canary_store_up"]) == {("canary_store_up",): 1}
    got = _samples(families["canary_window_latency_seconds"])
    bucket = "canary_window_latency_seconds_bucket"
    assert got[(bucket, rid, svc, "canary", "0.01")] == 1
    assert got[(bucket, rid, svc, "canary", "0.05")] == 3
    assert got[(bucket, rid, svc, "canary", "1.0")] == 4
    assert got[(bucket, rid, svc, "canary", str(LATENCY_BUCKETS[-1]))] == 4
    assert got[(bucket, rid, svc, "canary", "+Inf")] == 5
    assert got[("canary_window_latency_seconds_count", rid, svc, "canary")] == 5
    assert abs(got[("canary_window_latency_seconds_sum", rid, svc, "canary")] - 20.765) < 1e-9
    # A version without results in the window still has its (empty) histogram.
    assert got[("canary_window_latency_seconds_count", rid, svc, "stable")] == 0
    assert _samples(families["canary_window_results"]) == {
        ("canary_window_results", rid, svc, "canary", "ok"): 4,
        ("canary_window_results", rid, svc, "canary", "failed"): 1,
        ("canary_window_results", rid, svc, "stable", "ok"): 0,
        ("canary_window_results", rid, svc, "stable", "failed"): 0,
    }


def test_last_decision_gives_ratios_and_seconds_and_skips_what_is_missing(
    redis_url: str,
) -> None:
    store = Store.from_url(redis_url)
    rid, svc = _rollout(store, "r1")
    other, _ = _rollout(store, "r2")
    first = {"n": 10, "success_rate": 50.0, "p50_ms": 900.0, "p95_ms": 990.0}
    store.append_event(rid, "decision", {"action": "hold", "metrics": {"canary": first}})
    # Only the newest decision counts; a None quantile or a missing version is left out.
    canary = {"n": 40, "success_rate": 97.5, "p50_ms": 40.0, "p95_ms": None}
    store.append_event(
        rid, "decision", {"action": "increase", "metrics": {"canary": canary, "stable": {"n": 0}}}
    )
    store.append_event(other, "decision", {"action": "increase", "metrics": {"stable": None}})

    families = _collect(store)

    assert _samples(families["canary_version_success_ratio"]) == {
        ("canary_version_success_ratio", rid, svc, "canary"): 0.975
    }
    assert _samples(families["canary_version_latency_seconds"]) == {
        ("canary_version_latency_seconds", rid, svc, "canary", "0.5"): 0.04
    }
    assert _samples(families["canary_version_samples"]) == {
        ("canary_version_samples", rid, svc, "canary"): 40,
        ("canary_version_samples", rid, svc, "stable"): 0,
    }
    decisions = _samples(families["canary_decisions"])
    assert decisions[("canary_decisions_total", rid, svc, "hold")] == 1
    assert decisions[("canary_decisions_total", rid, svc, "increase")] == 1
    assert decisions[("canary_decisions_total", other, svc, "increase")] == 1


def test_store_down_yields_only_store_up_zero() -> None:
    # Nothing listens on port 1: a scrape still answers, saying Redis could not be read.
    families = _collect(Store.from_url("redis://127.0.0.1:1/0"))
    assert list(families) == ["canary_store_up"]
    assert _samples(families["canary_store_up"]) == {("canary_store_up",): 0}
