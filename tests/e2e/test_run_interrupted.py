"""`canary run` in full local mode (its own Redis and workers): Ctrl-C or kill -9 leave nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.fixtures.processes import left_under, processes_under
from tests.fixtures.services import DemoFactory

ROOT = Path(__file__).resolve().parents[2]


def _start(tmp_path: Path, demo_service_factory: DemoFactory) -> tuple[subprocess.Popen[str], Path]:
    rollout = tmp_path / "r.yaml"
    rollout.write_text(
        yaml.safe_dump(
            {
                "name": "slow",
                "stable": {"url": demo_service_factory("s").url},
                "canary": {"url": demo_service_factory("c").url},
                "transactions": [str(ROOT / "configs/transactions/demo-browse.yaml")],
                "schedule": {"step_interval": "30s"},
                "probes": {"per_step": 5},
            }
        )
    )
    workdir = tmp_path / "work"
    env = {k: v for k, v in os.environ.items() if k != "CANARY_REDIS_URL"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "canary.cli.main", "run", str(rollout), "--workdir", str(workdir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    seen = ""
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen += line
        if "step 1/" in line:
            return proc, workdir
    proc.kill()
    raise AssertionError(f"the rollout did not start:\n{seen}")


def test_ctrl_c_rolls_back_and_stops_everything(
    tmp_path: Path, demo_service_factory: DemoFactory
) -> None:
    proc, workdir = _start(tmp_path, demo_service_factory)
    assert processes_under(workdir), "local mode should have started Redis and workers"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "interrupted" in out
    assert "Traceback" not in out
    assert left_under(workdir) == []


def test_kill_9_of_canary_run_leaves_no_orphans(
    tmp_path: Path, demo_service_factory: DemoFactory
) -> None:
    proc, workdir = _start(tmp_path, demo_service_factory)
    proc.kill()
    proc.wait(timeout=10)
    assert left_under(workdir) == []
