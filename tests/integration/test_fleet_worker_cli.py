"""`canary worker`: the one command that starts a probe worker on a new host."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from canary.cli.worker import queue_names, register, worker_argv
from canary.errors import CanaryError
from canary.local import ManagedProcess

ROOT = Path(__file__).resolve().parents[2]


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["worker", *argv])


def test_environments_map_to_probe_queues() -> None:
    assert queue_names(["eu-west,control", "canary.probe.x", "eu-west"]) == [
        "canary.probe.eu-west",
        "canary.control",
        "canary.probe.x",
    ]
    with pytest.raises(CanaryError, match="at least one"):
        queue_names([" , "])


def test_argv_carries_broker_threads_and_host_label() -> None:
    args = _parse("--queues", "host1", "-c", "32", "--broker", "redis://10.0.0.1:6379/0")
    args.probe_threads, args.host_label = 100, "h1"
    argv, env = worker_argv(args)
    assert argv[argv.index("-Q") + 1] == "canary.probe.host1"
    assert argv[argv.index("-c") + 1] == "32" and "threads" in argv
    assert env["CANARY_REDIS_URL"] == "redis://10.0.0.1:6379/0"
    assert env["CANARY_PROBE_THREADS"] == "100" and env["CANARY_HOST"] == "h1"


def test_the_command_starts_a_worker_that_answers(tmp_path: Path, redis_url: str) -> None:
    proc = ManagedProcess(
        "worker",
        [sys.executable, "-m", "canary.cli.worker", "--queues", "t1", "--broker", redis_url],
        log_path=tmp_path / "worker.log",
        cwd=ROOT,
    )
    with proc:
        line = proc.wait_for_log(" ready.", timeout=30)
        assert "canary-t1-" in line


def test_no_broker_is_a_clear_error(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "canary.cli.worker", "--queues", "x"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
        cwd=ROOT,
    )
    assert r.returncode == 2 and "no broker" in r.stderr
