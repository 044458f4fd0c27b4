"""`canary run` end to end: real Redis, real Celery worker processes, real demo services."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from canary.local import LocalFleet
from tests.fixtures.services import DemoFactory

ROOT = Path(__file__).resolve().parents[2]
CANARY = [sys.executable, "-m", "canary.cli.main"]
TX = [
    str(ROOT / "configs" / "transactions" / f"demo-{n}.yaml")
    for n in ("browse", "search", "checkout")
]


def _rollout(tmp: Path, name: str, stable: str, canary: str) -> Path:
    doc: dict[str, Any] = {
        "name": name,
        "stable": {"url": stable, "version": "1.0.0"},
        "canary": {"url": canary, "version": "1.1.0"},
        "transactions": TX,
        "schedule": {"initial_weight": 20, "step_weight": 40, "step_interval": "3s"},
        "probes": {"per_step": 20, "batch_size": 10},
        "slo": {
            "success_threshold": 95,
            "max_latency_increase_pct": 100,
            "max_error_rate_increase_pp": 2,
        },
        "analysis": {"max_holds": 2},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture()
def fleet(tmp_path: Path, redis_url: str) -> Any:
    with LocalFleet(tmp_path / "fleet", redis_url=redis_url) as f:
        yield f


def test_healthy_canary_is_promoted_and_faulty_one_rolled_back(
    tmp_path: Path, fleet: LocalFleet, demo_service_factory: DemoFactory
) -> None:
    healthy = _rollout(
        tmp_path,
        "healthy",
        demo_service_factory("hs", latency_ms=5).url.rstrip("/"),
        demo_service_factory("hc", latency_ms=5).url.rstrip("/"),
    )
    faulty = _rollout(
        tmp_path,
        "faulty",
        demo_service_factory("fs", latency_ms=5).url.rstrip("/"),
        demo_service_factory("fc", latency_ms=5, error_rate=0.3).url.rstrip("/"),
    )
    env = {**os.environ, "CANARY_REDIS_URL": fleet.redis_url or ""}
    # Both rollouts share the running fleet: `canary run` starts nothing when workers are there.
    runs = [
        subprocess.Popen(
            [*CANARY, "run", str(p), "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in (healthy, faulty)
    ]
    outs = [r.communicate(timeout=240) for r in runs]
    (h_out, h_err), (f_out, f_err) = outs
    assert runs[0].returncode == 0, h_err
    assert runs[1].returncode == 3, f_err
    h = json.loads(h_out.strip().splitlines()[-1])
    f = json.loads(f_out.strip().splitlines()[-1])
    assert h["outcome"] == "promoted" and h["weight"] == 100
    assert f["outcome"] == "rolled_back" and f["weight"] == 0
    assert any("canary" in r for r in f["reasons"])
    assert "starting local" not in h_err  # the fleet was found, not started again
    assert "step 1/" in h_err and "PROMOTED" in h_err


def test_invalid_rollout_exits_2_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: x\nstable: {url: http://127.0.0.1:1}\ncanary: {url: not-a-url}\ntransactions: [missing.yaml]\nschedul: {}\n"
    )
    r = subprocess.run([*CANARY, "run", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert f"{bad}:3:15: canary.url:" in r.stderr
    assert f"{bad}:5:1: schedul: unknown field 'schedul'; did you mean 'schedule'?" in r.stderr
