"""The demo service as a real subprocess: faults, concurrency, clean exit, its seed transactions."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from jsonpath_ng.ext import parse as jsonpath

from tests.fixtures.services import DemoFactory
from tests.fixtures.waits import START_CEILING_S

pytestmark = pytest.mark.integration

TRANSACTIONS = Path(__file__).resolve().parents[2] / "configs" / "transactions"


def _timed_get(session: requests.Session, url: str) -> float:
    began = time.perf_counter()
    assert session.get(url, timeout=10).status_code == 200
    return time.perf_counter() - began


def test_healthy_service_identifies_itself(demo_service_factory: DemoFactory) -> None:
    svc = demo_service_factory("canary", version="2.0.0")
    resp = requests.get(svc.url + "version", timeout=5)
    assert resp.json() == {"name": "canary", "version": "2.0.0"}
    assert resp.headers["X-Canary-Version"] == "canary"


def test_error_rate_is_roughly_right(demo_service_factory: DemoFactory) -> None:
    svc = demo_service_factory("canary", error_rate=0.3, seed=42)
    s = requests.Session()
    codes = [s.get(svc.url + "api/products", timeout=5).status_code for _ in range(500)]
    assert set(codes) == {200, 500}
    assert 0.22 <= codes.count(500) / len(codes) <= 0.38
    assert all(s.get(svc.url + "healthz", timeout=5).status_code == 200 for _ in range(50))


def test_latency_is_added(demo_service_factory: DemoFactory) -> None:
    fast = demo_service_factory("stable")
    slow = demo_service_factory("canary", latency_ms=150, seed=1)
    s = requests.Session()
    assert all(s.get(fast.url + "api/products", timeout=10).ok for _ in range(10))
    slow_times = [_timed_get(s, slow.url + "api/products") for _ in range(10)]
    # Lower bounds only (a busy machine makes requests slower, never faster): each one waited
    # out its delay, 150 ms less the jitter; the delays' sizes are tests/unit/demo's.
    assert min(slow_times) >= 0.13
    assert len({round(t, 4) for t in slow_times}) > 1  # jitter


def test_latency_grows_with_time(demo_service_factory: DemoFactory) -> None:
    svc = demo_service_factory("canary", latency_growth_ms_per_s=100)
    s = requests.Session()
    _timed_get(s, svc.url + "api/products")
    time.sleep(2.0)  # the growth's time base, not a wait for an event
    # Two seconds after the first request, and so more after the service started: at least
    # 100 ms/s x 2 s of added delay (a lower bound, which load cannot break).
    assert _timed_get(s, svc.url + "api/products") >= 0.2


def test_broken_endpoint_answers_500(demo_service_factory: DemoFactory) -> None:
    svc = demo_service_factory("canary", broken_endpoint="checkout")
    s = requests.Session()
    for _ in range(20):
        resp = s.post(svc.url + "api/checkout", json={"items": [{"sku": "A1"}]}, timeout=5)
        assert resp.status_code == 500
    assert s.post(svc.url + "api/cart", json={"sku": "A1", "qty": 1}).status_code == 201


def test_broken_endpoint_answers_a_wrong_body(demo_service_factory: DemoFactory) -> None:
    svc = demo_service_factory("canary", broken_endpoint="checkout:body")
    resp = requests.post(svc.url + "api/checkout", json={"items": [{"sku": "A1"}]}, timeout=5)
    assert resp.status_code == 200
    assert resp.json() == {"order_id": None, "status": "pending"}


def test_serves_many_concurrent_clients_without_errors(demo_service_factory: DemoFactory) -> None:
    svc = demo_service_factory("stable")
    errors: list[str] = []
    threads_n, per_thread = 16, 40

    def client() -> None:
        s = requests.Session()
        for i in range(per_thread):
            path = "api/products/A1" if i % 2 else "api/search?q=mug"
            resp = s.get(svc.url + path, timeout=10)
            if resp.status_code != 200:
                errors.append(f"{path}: {resp.status_code}")

    threads = [threading.Thread(target=client) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # How fast it serves is for scripts/bench-fleet; here, that it serves them all.
    assert errors == []


def test_sigterm_exits_cleanly(demo_service_factory: DemoFactory) -> None:
    svc = demo_service_factory("stable")
    requests.get(svc.url + "api/products", timeout=5)
    assert svc.pid is not None
    svc.terminate()  # SIGTERM to its process group
    # 0: it exited by itself on SIGTERM (stop() would have had to SIGKILL it after the ceiling).
    assert svc.stop(timeout=30) == 0
    assert "stopped" in svc.log_text()
    assert "Traceback" not in svc.log_text()


def test_refuses_unknown_endpoint_names() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "canary.demo", "serve", "--port", "0", "--broken-endpoint", "chk"],
        capture_output=True,
        text=True,
        timeout=START_CEILING_S,
    )
    assert result.returncode == 2
    assert "known endpoints" in result.stderr


# A minimal reading of the seed fields, enough to check the demo's transactions fit the demo.
def _run_seed(definition: dict[str, Any], target: str) -> list[str]:
    """Run one transaction; returns what failed (empty when it succeeded)."""
    s = requests.Session()
    origin = urllib.parse.urlsplit(definition["entrypoint_url"])[:2]

    def resolve(url: str) -> str:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme and parts[:2] == origin:
            url = urllib.parse.urlunsplit(("", "", parts.path, parts.query, parts.fragment))
        return urllib.parse.urljoin(target, url)

    if s.get(resolve(definition["entrypoint_url"]), timeout=10).status_code >= 400:
        return ["entrypoint"]
    for n, step in enumerate(definition["steps"]):
        kind = step.get("payload_type", "json")
        payload = step.get("payload")
        kwargs: dict[str, Any] = {}
        if payload is not None:
            kwargs = {"json": payload} if kind == "json" else {"data": payload}
        resp = s.request(step["method"], resolve(step["url"]), timeout=10, **kwargs)
        expected = step.get("expected_response_code", list(range(200, 300)))
        if resp.status_code not in (expected if isinstance(expected, list) else [expected]):
            return [f"step {n}: status {resp.status_code}"]
        for check in step.get("response_validation", []):
            if "jsonpath" in check:
                values = [m.value for m in jsonpath(check["jsonpath"]).find(resp.json())]
                if not values or ("equals" in check and check["equals"] not in values):
                    return [f"step {n}: {check['jsonpath']} gave {values}"]
            elif "regex" in check and not re.search(check["regex"], resp.text):
                return [f"step {n}: no match for {check['regex']}"]
    return []


@pytest.mark.parametrize("name", ["demo-browse", "demo-search", "demo-checkout"])
def test_demo_transactions_pass_on_a_healthy_service(
    demo_service_factory: DemoFactory, name: str
) -> None:
    definition = yaml.safe_load((TRANSACTIONS / f"{name}.yaml").read_text())
    assert definition["transaction_name"] == name
    svc = demo_service_factory("stable")
    assert _run_seed(definition, svc.url) == []


def test_demo_checkout_fails_on_a_broken_checkout(demo_service_factory: DemoFactory) -> None:
    definition = yaml.safe_load((TRANSACTIONS / "demo-checkout.yaml").read_text())
    for mode, failure in (("500", "status 500"), ("body", "$.status")):
        svc = demo_service_factory("canary", broken_endpoint=f"checkout:{mode}")
        problems = _run_seed(definition, svc.url)
        assert len(problems) == 1
        assert problems[0].startswith("step 1:")
        assert failure in problems[0]
