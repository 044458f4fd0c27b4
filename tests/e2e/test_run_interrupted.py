"""`canary run` in full local mode (its own Redis and workers): whatever stops it, traffic ends on
stable and nothing is left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from canary.cli.rollouts import HOLD_AFTER_PUBLISH_ENV
from tests.fixtures.processes import left_under, processes_under
from tests.fixtures.rollouts import HELD_AT_10, given_weights, rollout_file
from tests.fixtures.services import DemoFactory
from tests.fixtures.waits import wait_until

# Ceilings, not expectations: a busy CI machine starts Celery workers slowly.
START_CEILING_S = 180.0
END_CEILING_S = 180.0


@dataclass
class Run:
    proc: subprocess.Popen[str]
    workdir: Path
    home: Path
    weights: Path
    seen: str

    def weights_given(self) -> list[str]:
        return given_weights(self.weights)

    def finish(self) -> str:
        try:
            out, _ = self.proc.communicate(timeout=END_CEILING_S)
        except subprocess.TimeoutExpired:
            # Shrugged off: SIGTERM ends it (on stable) so that a failed test leaves nothing.
            self.proc.terminate()
            out, _ = self.proc.communicate(timeout=END_CEILING_S)
            raise AssertionError(f"still running after the signal:\n{self.seen + out}") from None
        return self.seen + out


def _start(
    tmp_path: Path,
    demo_service_factory: DemoFactory,
    *,
    wait_for: str,
    sigint_ignored: bool = False,
    env_extra: dict[str, str] | None = None,
) -> Run:
    """`canary run` of a slow rollout whose router appends every weight it is given to a file;
    returns once ``wait_for`` appeared in its output.

    ``sigint_ignored``: started as a script's background job is (``cmd &`` without job
    control), with SIGINT ignored, which Python then keeps ignoring unless told otherwise.
    """
    weights = tmp_path / "weights"
    rollout = rollout_file(
        tmp_path / "slow.yaml", demo_service_factory, schedule=HELD_AT_10, weights=weights
    )
    workdir, home = tmp_path / "work", tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "CANARY_REDIS_URL"}
    # Its own CANARY_HOME: a `canary local up` fleet elsewhere on this machine must not be used.
    env["CANARY_HOME"] = str(home)
    env.update(env_extra or {})
    argv = [sys.executable, "-m", "canary.cli.main", "run", str(rollout), "--workdir", str(workdir)]
    if sigint_ignored:
        argv = ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *argv]
    proc = subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + START_CEILING_S
    seen = ""
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen += line
        if wait_for in line:
            return Run(proc, workdir, home, weights, seen)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"never saw {wait_for!r}:\n{seen}")


def _kept_record(run: Run) -> dict[str, object]:
    records = list((run.home / "runs").glob("*/record.json"))
    assert len(records) == 1, records
    record: dict[str, object] = json.loads(records[0].read_text())
    return record


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["default", "inherited-ignored"])
def test_ctrl_c_rolls_back_and_stops_everything(
    tmp_path: Path, demo_service_factory: DemoFactory, sigint_ignored: bool
) -> None:
    run = _start(tmp_path, demo_service_factory, wait_for="step 1/", sigint_ignored=sigint_ignored)
    assert processes_under(run.workdir), "local mode should have started Redis and workers"
    run.proc.send_signal(signal.SIGINT)
    out = run.finish()
    assert run.proc.returncode == 1, out  # specs/cli.md: any other failure
    assert "interrupted" in out
    assert "Traceback" not in out
    assert left_under(run.workdir, timeout=60) == []


def test_ctrl_c_while_the_fleet_starts_exits_1_and_stops_everything(
    tmp_path: Path, demo_service_factory: DemoFactory
) -> None:
    run = _start(tmp_path, demo_service_factory, wait_for="starting local")
    run.proc.send_signal(signal.SIGINT)
    out = run.finish()
    assert run.proc.returncode == 1, out  # specs/cli.md: a signal is "any other failure"
    assert "Traceback" not in out
    assert "stopped by SIGINT before the rollout started" in out
    assert run.weights_given() == []
    assert left_under(run.workdir, timeout=60) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_send_traffic_to_stable_and_keep_the_record(
    tmp_path: Path, demo_service_factory: DemoFactory, sig: signal.Signals
) -> None:
    run = _start(tmp_path, demo_service_factory, wait_for="traffic: 10% to canary")
    assert run.weights_given()[-1] == "10"
    run.proc.send_signal(sig)
    out = run.finish()
    assert run.proc.returncode == 1, out
    assert "Traceback" not in out
    assert f"interrupted by {sig.name}: traffic sent to stable" in out
    assert run.weights_given()[-2:] == ["10", "0"]
    record = _kept_record(run)
    assert record["state"] == "failed" and record["weight"] == 0
    assert any(sig.name in str(r) for r in record["reasons"])  # type: ignore[attr-defined]
    assert f"record kept in {run.home / 'runs'}" in out
    # The last will (for kill -9) was revoked once the rollout ended: nothing moves traffic later.
    assert not list((run.home / "runs").glob("*/will.*"))
    assert left_under(run.workdir, timeout=60) == []


@pytest.mark.parametrize(
    ("sig", "after"), [(signal.SIGTERM, "weight set"), (signal.SIGINT, "task sent")]
)
def test_a_signal_inside_the_publish_of_the_start_ends_on_stable_with_the_reason(
    tmp_path: Path, demo_service_factory: DemoFactory, sig: signal.Signals, after: str
) -> None:
    # start() holds right after sending the start task until a signal comes: the signal lands
    # there, whether the control worker has yet created the rollout and moved traffic or not.
    hold = tmp_path / "held"
    run = _start(
        tmp_path,
        demo_service_factory,
        wait_for="local fleet ready",
        env_extra={HOLD_AFTER_PUBLISH_ENV: str(hold)},
    )
    wait_until("start() to send the start task", hold.exists, START_CEILING_S)
    if after == "weight set":
        # The first traffic step has been published: 10% of the users on the canary.
        wait_until("traffic on the canary", lambda: "10" in run.weights_given(), START_CEILING_S)
    run.proc.send_signal(sig)
    out = run.finish()
    assert run.proc.returncode == 1, out
    assert "Traceback" not in out
    assert f"interrupted by {sig.name}: traffic sent to stable" in out, out
    assert run.weights_given()[-1:] in ([], ["0"]), run.weights_given()
    record = _kept_record(run)
    assert record["state"] == "failed" and record["weight"] == 0
    assert any(sig.name in str(r) for r in record["reasons"])  # type: ignore[attr-defined]
    assert not list((run.home / "runs").glob("*/will.*"))
    assert left_under(run.workdir, timeout=60) == []


def test_redis_killed_under_canary_run_sends_traffic_to_stable(
    tmp_path: Path, demo_service_factory: DemoFactory
) -> None:
    run = _start(tmp_path, demo_service_factory, wait_for="traffic: 10% to canary")
    redis_pids = [int(p.split(":")[0]) for p in processes_under(run.workdir) if "redis-server" in p]
    assert len(redis_pids) == 1, processes_under(run.workdir)
    os.kill(redis_pids[0], signal.SIGKILL)
    out = run.finish()
    assert run.proc.returncode == 1, out
    assert "Traceback" not in out
    assert "lost Redis" in out and "traffic sent to stable" in out
    assert run.weights_given()[-2:] == ["10", "0"]
    assert left_under(run.workdir, timeout=60) == []


def test_kill_9_of_canary_run_leaves_no_orphans_and_its_watchdog_rolls_back(
    tmp_path: Path, demo_service_factory: DemoFactory
) -> None:
    run = _start(tmp_path, demo_service_factory, wait_for="traffic: 10% to canary")
    run.proc.kill()
    run.proc.wait(timeout=60)
    assert left_under(run.workdir, timeout=60) == []
    # The run's watchdog outlives it and carries out its last will: traffic to stable.
    deadline = time.monotonic() + END_CEILING_S
    while run.weights_given()[-1:] != ["0"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert run.weights_given()[-2:] == ["10", "0"]
    logs = list((run.home / "runs").glob("*/will.log"))
    assert len(logs) == 1 and "traffic sent to stable" in logs[0].read_text()
