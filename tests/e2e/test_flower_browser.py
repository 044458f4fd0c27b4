"""Flower with basic auth during a real rollout: 401 without credentials, the rollout's tasks with."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from canary import report
from canary.local import LocalFleet
from canary.local.flower import start_flower, task_argsrepr
from canary.store import Store
from tests.e2e.test_report_browser import ensure_chromium, run_chromium
from tests.fixtures.services import DemoFactory

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CANARY = [sys.executable, "-m", "canary.cli.main"]


def _rollout(tmp: Path, stable: str, canary: str) -> Path:
    doc: dict[str, Any] = {
        "name": "flowershop",
        "stable": {"url": stable, "version": "1.0.0"},
        "canary": {"url": canary, "version": "1.1.0"},
        "transactions": [str(ROOT / "configs" / "transactions" / "demo-browse.yaml")],
        "schedule": {"steps": [50, 100], "step_interval": "2s"},
        "probes": {"per_step": 10, "batch_size": 10},
        "slo": {"success_threshold": 90, "max_latency_increase_pct": 200},
        "analysis": {"max_holds": 1},
    }
    path = tmp / "flowershop.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture()
def fleet(tmp_path: Path, redis_url: str) -> Iterator[LocalFleet]:
    with LocalFleet(tmp_path / "fleet", redis_url=redis_url) as f:
        yield f


def test_flower_shows_the_rollout_tasks_behind_basic_auth(
    tmp_path: Path, fleet: LocalFleet, demo_service_factory: DemoFactory
) -> None:
    chromium = ensure_chromium()
    proc, url, password = start_flower(tmp_path, fleet.redis_url)
    with proc:
        assert len(password) >= 20
        assert requests.get(f"{url}/tasks", timeout=5).status_code == 401
        assert (
            requests.get(f"{url}/api/tasks", auth=("canary", "wrong"), timeout=5).status_code == 401
        )

        rollout = _rollout(
            tmp_path,
            demo_service_factory("fs", latency_ms=2).url.rstrip("/"),
            demo_service_factory("fc", latency_ms=2).url.rstrip("/"),
        )
        run = subprocess.run(
            [*CANARY, "run", str(rollout), "--json"],
            env={**os.environ, "CANARY_REDIS_URL": fleet.redis_url},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        rid = yaml.safe_load(run.stdout.strip().splitlines()[-1])["id"]

        # Flower learns of tasks from worker events, which arrive a moment after the tasks ran.
        deadline, tasks = time.monotonic() + 20, {}
        names: set[str] = set()
        while time.monotonic() < deadline:
            resp = requests.get(f"{url}/api/tasks", auth=("canary", password), timeout=5)
            assert resp.status_code == 200
            tasks = resp.json()
            # Tasks are sent with an argsrepr naming the rollout, which Flower shows as args.
            mine = [t for t in tasks.values() if f"rollout={rid}" in str(t.get("args"))]
            names = {str(t.get("name")) for t in mine}
            if len(names) == 4:
                break
            time.sleep(0.5)
        assert {
            "canary.start_rollout",
            "canary.advance",
            "canary.analyze",
            "canary.probe_batch",
        } <= names, names

        # The browser sends the credentials from the URL, and the tasks table names the rollout.
        authed = url.replace("http://", f"http://canary:{password}@")
        dom = run_chromium(
            chromium,
            tmp_path / "profile",
            "--virtual-time-budget=8000",
            "--dump-dom",
            f"{authed}/tasks",
        ).stdout
        (tmp_path / "tasks.html").write_text(dom)  # kept in the test's folder for a look
        assert "canary.advance" in dom, dom[-2000:]
        assert rid in dom
        assert "401" not in dom[:500]
        shot = tmp_path / "flower-tasks.png"
        run_chromium(
            chromium,
            tmp_path / "profile",
            "--virtual-time-budget=8000",
            f"--screenshot={shot}",
            "--window-size=1600,1000",
            f"{authed}/tasks",
        )
        assert shot.is_file() and shot.stat().st_size > 10_000
        denied = run_chromium(chromium, tmp_path / "profile2", "--dump-dom", f"{url}/tasks").stdout
        assert rid not in denied
        assert password not in proc.log_text()

        # The same real rollout, as a report: the controller's own events and results drawn.
        data = report.from_store(Store.from_url(fleet.redis_url), rid)
        assert data.outcome == "promoted" and data.canary_version == "1.1.0"
        assert [d.action for d in data.decisions][-1] in ("increase", "promote")
        assert len(data.decisions) == 3 and len(data.observations) == 60
        assert [w for _, w in data.weights] == [0, 50, 100, 100]
        page = report.write_report(data, tmp_path / "real.html").read_text()
        assert page.count('<g class="decision ') == 9 and 'data-points="' in page
    assert not proc.alive


def test_task_argsrepr_names_the_rollout_and_where_it_is() -> None:
    rid = "shop-20260101-000000-abc123"
    assert task_argsrepr("canary.advance", [rid, 2, 1]) == f"rollout={rid} step=2 attempt=1"
    assert task_argsrepr("canary.analyze", [rid, "s2a1"]) == f"rollout={rid} window=s2a1"
    assert task_argsrepr("canary.check", [rid, "s2a1"]) == f"rollout={rid} window=s2a1"
    batch = {
        "rollout_id": rid,
        "window": "s2a1",
        "transaction": "checkout",
        "batch_id": "s2a1.checkout.0",
        "count": 10,
        "environment": "default",
        "spread_s": 3.0,
    }
    assert task_argsrepr("canary.probe_batch", [batch]) == (
        f"rollout={rid} window=s2a1 transaction=checkout batch=s2a1.checkout.0 count=10 environment=default"
    )
    cfg = {"name": "shop", "stable": {"version": "1.0"}, "canary": {"version": "1.1"}}
    assert task_argsrepr("canary.start_rollout", [cfg, [], rid]) == f"rollout={rid} 1.0 → 1.1"
    assert task_argsrepr("canary.abort", [rid]) == f"rollout={rid}"
    assert len(task_argsrepr("canary.other", ["x" * 1000])) == 200
