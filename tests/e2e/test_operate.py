"""Operating rollouts from the CLI: `canary local up|status|down` and `canary rollout ...`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from canary.cli.localmode import UP_TIMEOUT_S
from canary.store import Store
from tests.fixtures.processes import left_under
from tests.fixtures.services import DemoFactory
from tests.fixtures.waits import CEILING_S, wait_until

ROOT = Path(__file__).resolve().parents[2]
CANARY = [sys.executable, "-m", "canary.cli.main"]


# Above `local up`'s own ceiling (UP_TIMEOUT_S), so that a slow start fails with its reason.
COMMAND_CEILING_S = UP_TIMEOUT_S + 60


def _canary(
    env: dict[str, str], *args: str, timeout: float = COMMAND_CEILING_S
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CANARY, *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def _rollout(tmp: Path, stable: str, canary: str, interval: str) -> Path:
    doc: dict[str, Any] = {
        "name": "op",
        "stable": {"url": stable, "version": "1.0"},
        "canary": {"url": canary, "version": "2.0"},
        "transactions": [str(ROOT / "configs/transactions/demo-browse.yaml")],
        "schedule": {"initial_weight": 50, "step_weight": 50, "step_interval": interval},
        "probes": {"per_step": 12, "batch_size": 6},
        "slo": {
            "max_latency_increase_pct": 200,
            "max_error_rate_increase_pp": 5,
            "success_threshold": 90,
        },
    }
    path = tmp / "op.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


# A ceiling for a busy machine: a dozen commands, each starting Python and its imports, and a
# fleet of six processes (at a load of 10 this took four minutes, quiet under one).
@pytest.mark.timeout(900)
def test_local_fleet_runs_rollouts_started_watched_and_aborted_from_the_cli(
    tmp_path: Path, demo_service_factory: DemoFactory
) -> None:
    home = tmp_path / "home"
    env = {
        **{k: v for k, v in os.environ.items() if k != "CANARY_REDIS_URL"},
        "CANARY_HOME": str(home),
    }
    up = _canary(env, "local", "up")
    assert up.returncode == 0, up.stderr
    try:
        # The Redis has a password, kept in the state file and never printed.
        assert "Redis: redis://:***@127.0.0.1:" in up.stdout
        status = _canary(env, "local", "status", "--json")
        assert status.returncode == 0
        info = json.loads(status.stdout)
        assert info["running"] is True and "flower_password" not in info
        # Flower runs beside the fleet, behind basic auth.
        state = json.loads((home / "state.json").read_text())
        assert (home / "state.json").stat().st_mode & 0o077 == 0
        assert requests.get(state["flower_url"] + "/api/workers", timeout=5).status_code == 401
        auth = (state["flower_user"], state["flower_password"])
        assert requests.get(state["flower_url"] + "/api/workers", auth=auth, timeout=5).ok

        stable, canary = demo_service_factory("s").url, demo_service_factory("c").url
        # A quick rollout, started and then watched to its end.
        started = _canary(
            env, "rollout", "start", str(_rollout(tmp_path, stable, canary, "1s")), "--json"
        )
        assert started.returncode == 0, started.stderr
        rid = json.loads(started.stdout)["id"]
        watched = _canary(env, "rollout", "watch", rid, "--json")
        assert watched.returncode == 0, watched.stderr
        assert json.loads(watched.stdout.splitlines()[-1])["outcome"] == "promoted"

        # A slow one (30 s steps), aborted by an operator while it runs: the abort is applied
        # at once, not at the step's end.
        slow = _canary(env, "rollout", "start", str(_rollout(tmp_path, stable, canary, "30s")))
        slow_id = slow.stdout.strip()
        store = Store.from_url(state["redis_url"])
        wait_until("the slow rollout's record", lambda: store.load_rollout(slow_id))
        aborted = _canary(env, "rollout", "abort", slow_id)
        assert aborted.returncode == 0 and "abort applied" in aborted.stdout, aborted.stderr
        watched = _canary(env, "rollout", "watch", slow_id, "--json")
        assert watched.returncode == 3, watched.stderr
        final = json.loads(watched.stdout.splitlines()[-1])
        assert final["state"] == "aborted" and final["weight"] == 0

        listed = _canary(env, "rollout", "status", "--json")
        rows = [json.loads(line) for line in listed.stdout.splitlines()]
        assert [r["id"] for r in rows] == [slow_id, rid]
        assert rows[0]["state"] == "aborted" and rows[1]["state"] == "promoted"
        assert "op-" in _canary(env, "rollout", "status").stdout
        assert _canary(env, "rollout", "status", "no-such-rollout").returncode == 2
        assert _canary(env, "rollout", "abort", rid).returncode == 1  # already ended
    finally:
        down = _canary(env, "local", "down")
    assert down.returncode == 0, down.stderr
    assert left_under(home, timeout=CEILING_S) == []
    assert _canary(env, "local", "status").returncode == 1
