"""`canary local up|status|down` as an operator runs them: one fleet, started by two `up` at once,
with a password on its Redis, a supervisor that restarts what dies, and a `down` that will not
strand a running rollout's traffic."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from canary.local.procs import pid_running
from tests.fixtures.processes import left_under, processes_under
from tests.fixtures.rollouts import HELD_AT_10, given_weights, rollout_file
from tests.fixtures.services import DemoFactory

pytestmark = pytest.mark.e2e

CANARY = [sys.executable, "-m", "canary.cli.main"]
# Ceilings for a busy machine, not expectations.
CEILING_S = 120.0


@dataclass
class Fleet:
    home: Path
    env: dict[str, str]
    ups: list[subprocess.CompletedProcess[str]]

    def canary(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CANARY, *args], env=self.env, capture_output=True, text=True, timeout=CEILING_S * 2
        )

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads((self.home / "state.json").read_text())
        return state

    def wait_for_state(self, ok: Any, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + CEILING_S
        while time.monotonic() < deadline:
            try:
                state = self.state()
            except (OSError, ValueError):  # replaced atomically, but may be briefly absent
                state = {}
            if state and ok(state):
                return state
            time.sleep(0.2)
        log = (self.home / "supervisor.log").read_text(errors="replace")
        raise AssertionError(f"no {what} after {CEILING_S:g} s; supervisor log:\n{log}")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    home = tmp_path_factory.mktemp("local-home")
    env = {k: v for k, v in os.environ.items() if k != "CANARY_REDIS_URL"}
    env["CANARY_HOME"] = str(home)
    # Two `local up` at the same moment: one fleet must come of it.
    up = [*CANARY, "local", "up"]
    pipe = subprocess.PIPE
    procs = [subprocess.Popen(up, env=env, stdout=pipe, stderr=pipe, text=True) for _ in range(2)]
    ups = []
    for p in procs:
        out, err = p.communicate(timeout=CEILING_S * 3)
        ups.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    f = Fleet(home, env, ups)
    try:
        yield f
    finally:
        if (home / "state.json").exists():
            f.canary("local", "down", "--force")
        assert left_under(home, timeout=60) == []


def _supervisors(home: Path) -> list[str]:
    return [p for p in processes_under(home) if "canary.local.supervisor" in p]


def test_two_ups_at_once_start_one_fleet(fleet: Fleet) -> None:
    assert [u.returncode for u in fleet.ups] == [0, 0], [u.stderr for u in fleet.ups]
    said = sorted(u.stdout.splitlines()[0].split(" (")[0] for u in fleet.ups)
    assert said == ["already running", "local fleet up"]
    assert len(_supervisors(fleet.home)) == 1
    assert len([p for p in processes_under(fleet.home) if "redis-server" in p]) == 1


def test_redis_has_a_password_kept_in_the_private_state_file(fleet: Fleet) -> None:
    state = fleet.state()
    assert (fleet.home / "state.json").stat().st_mode & 0o077 == 0
    url = state["redis_url"]
    password = url.split("://:", 1)[1].split("@", 1)[0]
    assert len(password) >= 20
    host_port = url.rsplit("@", 1)[1].split("/")[0]
    host, port = host_port.split(":")
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(host=host, port=int(port), socket_timeout=5).ping()
    assert redis.Redis.from_url(url, socket_timeout=5).ping()
    # Neither printed nor on any command line (`ps` shows those to every user).
    assert all(password not in u.stdout + u.stderr for u in fleet.ups)
    assert not [p for p in processes_under(fleet.home) if password in p]
    # Commands without CANARY_REDIS_URL find the fleet through the state file.
    listed = fleet.canary("rollout", "status")
    assert listed.returncode == 0, listed.stderr
    status = fleet.canary("local", "status", "--json")
    assert password not in status.stdout
    assert json.loads(status.stdout)["healthy"] is True


def test_a_dead_worker_is_shown_down_then_restarted(fleet: Fleet) -> None:
    before = fleet.state()["processes"]["probe-worker"]
    supervisor = int(fleet.state()["pid"])
    # Held still, the supervisor cannot restart the worker before `status` has looked.
    os.kill(supervisor, signal.SIGSTOP)
    try:
        os.kill(before["pid"], signal.SIGKILL)
        deadline = time.monotonic() + CEILING_S
        while pid_running(before["pid"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        status = fleet.canary("local", "status")
        assert status.returncode == 1, status.stdout
        assert "DEGRADED" in status.stdout
        line = next(line for line in status.stdout.splitlines() if "probe-worker" in line)
        assert line.split()[1] == "DOWN"
    finally:
        os.kill(supervisor, signal.SIGCONT)
    after = fleet.wait_for_state(
        lambda s: (
            s["processes"]["probe-worker"]["restarts"] == 1
            and s["processes"]["probe-worker"]["alive"]
        ),
        "probe-worker restart",
    )["processes"]["probe-worker"]
    assert after["pid"] != before["pid"] and pid_running(after["pid"])
    log = (fleet.home / "supervisor.log").read_text()
    assert "probe-worker exited (status -9); restarting in" in log
    assert "probe-worker restarted" in log
    status = fleet.canary("local", "status")
    assert status.returncode == 0, status.stdout
    assert "restarted 1x" in status.stdout
    assert fleet.canary("local", "up").stdout.startswith("already running")


def test_canary_run_uses_the_running_fleet(
    fleet: Fleet, tmp_path: Path, demo_service_factory: DemoFactory
) -> None:
    quick = {"steps": [50, 100], "step_interval": "1s", "isolated_check": False}
    rollout = rollout_file(
        tmp_path / "quick.yaml", demo_service_factory, schedule=quick, per_step=12
    )
    ran = fleet.canary("run", str(rollout), "--json")
    assert "starting local" not in ran.stderr, ran.stderr
    rid = json.loads(ran.stdout.splitlines()[-1])["id"]
    assert "the record stays on the fleet" in ran.stderr
    listed = fleet.canary("rollout", "status", "--json")
    assert rid in [json.loads(line)["id"] for line in listed.stdout.splitlines()]


def test_down_refuses_while_a_rollout_runs_and_force_aborts_it_first(
    fleet: Fleet, tmp_path: Path, demo_service_factory: DemoFactory
) -> None:
    weights = tmp_path / "weights"
    rollout = rollout_file(
        tmp_path / "held.yaml", demo_service_factory, schedule=HELD_AT_10, weights=weights
    )
    started = fleet.canary("rollout", "start", str(rollout))
    assert started.returncode == 0, started.stderr
    rid = started.stdout.strip()
    deadline = time.monotonic() + CEILING_S
    while given_weights(weights)[-1:] != ["10"]:
        assert time.monotonic() < deadline, "the rollout never reached 10%"
        time.sleep(0.2)

    refused = fleet.canary("local", "down")
    assert refused.returncode == 1
    assert rid in refused.stderr and "--force" in refused.stderr
    assert fleet.canary("local", "status").returncode == 0  # still up

    forced = fleet.canary("local", "down", "--force")
    assert forced.returncode == 0, forced.stderr
    # Aborted by the coordinator, or (when it is slow to get to it) failed by `down` itself.
    assert re.search(rf"{rid}: (aborted|failed) at weight 0%", forced.stdout), forced.stdout
    assert given_weights(weights)[-1] == "0"
    assert "local fleet stopped" in forced.stdout
    assert left_under(fleet.home, timeout=60) == []
    assert fleet.canary("local", "status").returncode == 1
