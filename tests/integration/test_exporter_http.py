"""The Prometheus exporter over real HTTP, reading a rollout from a real Redis."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from canary.exporter import serve
from canary.local import ManagedProcess, free_port
from canary.probing.result import TransactionResult
from canary.store import Store
from tests.fixtures.waits import START_CEILING_S

pytestmark = pytest.mark.integration


def _stats(n: int, ok: int, p50: float, p95: float) -> dict[str, float | int]:
    return {
        "n": n,
        "ok": ok,
        "success_rate": 100.0 * ok / n,
        "error_rate_pct": 100.0 * (n - ok) / n,
        "p50_ms": p50,
        "p95_ms": p95,
        "mean_ms": p50,
    }


def seed_rollout(store: Store, rid: str = "shop-20260101-000000-abc123") -> str:
    """A running rollout at step 2 (weight 40) with two decisions, an alert and a window."""
    now = time.time()
    store.create_rollout(
        {
            "id": rid,
            "name": "shop",
            "service": "shop",
            "created_at": now - 60,
            "updated_at": now,
            "config": {"stable": {"version": "1.0.0"}, "canary": {"version": "1.1.0"}},
            "weights": [0, 20, 40, 100],
            "state": "running",
            "step": 2,
            "attempt": 0,
            "weight": 40,
            "window": "s2a0",
            "canary_failures": 3,
            "fence": 0,
        }
    )
    store.append_event(rid, "created", {"name": "shop", "service": "shop"})
    metrics = {"canary": _stats(20, 19, 40.0, 120.0), "stable": _stats(20, 20, 30.0, 60.0)}
    for action in ("increase", "increase"):
        store.append_event(
            rid, "decision", {"action": action, "reasons": ["ok"], "metrics": metrics}
        )
    store.append_event(rid, "alert", {"kind": "error_budget", "summary": "budget half spent"})
    store.add_window(rid, "s2a0")
    results = [
        TransactionResult(now, "canary", "browse", i != 0, 20.0 + 100 * i) for i in range(4)
    ] + [TransactionResult(now, "stable", "browse", True, 30.0) for _ in range(3)]
    store.record_batch(rid, "s2a0", "b1", results)
    return rid


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = requests.get(url, timeout=5)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture()
def exporter(redis_url: str) -> Iterator[tuple[str, str]]:
    store = Store.from_url(redis_url)
    rid = seed_rollout(store)
    server, thread = serve(store, port=free_port())
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics", rid
    finally:
        server.shutdown()
        thread.join(timeout=5)


def test_metrics_describe_the_rollout(exporter: tuple[str, str], redis_url: str) -> None:
    url, rid = exporter
    m = _scrape(url)
    base = (("rollout", rid), ("service", "shop"))

    def get(metric: str, /, **extra: str) -> float:
        return m[(metric, tuple(sorted((*base, *extra.items()))))]

    assert m[("canary_store_up", ())] == 1
    assert get("canary_rollout_state", state="running") == 1
    assert get("canary_rollout_state", state="promoted") == 0
    assert get("canary_rollout_weight_percent") == 40
    assert get("canary_rollout_step") == 3  # counted from 1, as `rollout status` says it
    assert get("canary_rollout_steps") == 4
    assert get("canary_rollout_canary_failures") == 3
    assert (
        get("canary_rollout_info", name="shop", stable_version="1.0.0", canary_version="1.1.0") == 1
    )
    assert get("canary_version_success_ratio", version="canary") == pytest.approx(0.95)
    assert get("canary_version_success_ratio", version="stable") == pytest.approx(1.0)
    assert get(
        "canary_version_latency_seconds", version="canary", quantile="0.95"
    ) == pytest.approx(0.12)
    assert get("canary_decisions_total", action="increase") == 2
    assert get("canary_decisions_total", action="rollback") == 0
    assert get("canary_alerts_total", kind="error_budget") == 1
    # The histogram of the current window: canary latencies 20, 120, 220, 320 ms.
    assert get("canary_window_latency_seconds_count", version="canary") == 4
    assert get("canary_window_latency_seconds_bucket", version="canary", le="0.1") == 1
    assert get("canary_window_latency_seconds_bucket", version="canary", le="0.25") == 3
    assert get("canary_window_latency_seconds_bucket", version="canary", le="+Inf") == 4
    assert get("canary_window_results", version="canary", outcome="failed") == 1

    # A scrape later sees new events only once (the tally reads the stream incrementally).
    Store.from_url(redis_url).append_event(
        rid, "decision", {"action": "rollback", "predictive": True}
    )
    m = _scrape(url)
    assert get("canary_decisions_total", action="increase") == 2
    assert get("canary_decisions_total", action="rollback") == 1
    assert get("canary_predictive_decisions_total") == 1


def test_redis_down_is_reported_not_a_500(redis_url: str) -> None:
    store = Store.from_url(f"redis://127.0.0.1:{free_port()}/0")
    server, thread = serve(store, port=free_port())
    try:
        m = _scrape(f"http://127.0.0.1:{server.server_address[1]}/metrics")
        assert m[("canary_store_up", ())] == 0
    finally:
        server.shutdown()
        thread.join(timeout=5)


_CLI = (
    "import argparse, sys\n"
    "from canary.cli import exporter\n"
    "p = argparse.ArgumentParser(); s = p.add_subparsers()\n"
    "exporter.register(s)\n"
    "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))\n"
)


def test_cli_serves_until_sigterm(redis_url: str) -> None:
    rid = seed_rollout(Store.from_url(redis_url))
    port = free_port()
    proc = ManagedProcess(
        "exporter",
        [sys.executable, "-c", _CLI, "exporter", "--port", str(port)],
        env={"CANARY_REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"},
    )
    with proc:
        proc.wait_for_log("serving http://127.0.0.1:", timeout=START_CEILING_S)
        m = _scrape(f"http://127.0.0.1:{port}/metrics")
        assert m[("canary_rollout_weight_percent", (("rollout", rid), ("service", "shop")))] == 40
        assert redis_url not in proc.log_text()
        os.killpg(proc.pid or 0, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while proc.alive and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.returncode == 0, proc.log_tail()


def test_cli_serves_store_down_while_redis_is_away(tmp_path: Path) -> None:
    port = free_port()
    nothing_there = f"redis://127.0.0.1:{free_port()}/0"
    proc = ManagedProcess(
        "exporter",
        [sys.executable, "-c", _CLI, "exporter", "--port", str(port)],
        env={"CANARY_REDIS_URL": nothing_there, "PYTHONUNBUFFERED": "1"},
        log_path=tmp_path / "exporter.log",
    )
    with proc:
        proc.wait_for_log("serving http://127.0.0.1:", timeout=60)
        assert _scrape(f"http://127.0.0.1:{port}/metrics")[("canary_store_up", ())] == 0
        assert proc.alive


def test_cli_refuses_without_redis_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from canary.cli import exporter
    from canary.errors import CanaryError

    monkeypatch.delenv("CANARY_REDIS_URL", raising=False)
    # Nor a `canary local up` fleet, which commands use when CANARY_REDIS_URL is not set.
    monkeypatch.setenv("CANARY_HOME", str(tmp_path))
    with pytest.raises(CanaryError, match="CANARY_REDIS_URL"):
        exporter.cmd_exporter(argparse.Namespace(host="127.0.0.1", port=free_port(), limit=5))
