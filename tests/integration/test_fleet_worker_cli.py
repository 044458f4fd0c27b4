"""`canary worker`: the one command that starts a probe worker on a new host."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pytest

from canary.cli.worker import queue_names, register, worker_argv
from canary.errors import CanaryError
from canary.local import ManagedProcess
from canary.rollout.windows import BatchSpec, VersionTarget
from canary.store import Store
from tests.fixtures.services import DemoFactory
from tests.fixtures.waits import START_CEILING_S

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
        line = proc.wait_for_log(" ready.", timeout=START_CEILING_S)
        assert "canary-t1-" in line


def test_a_worker_with_one_slot_paces_many_batches_at_once(
    tmp_path: Path, redis_url: str, demo_service_factory: DemoFactory
) -> None:
    # A batch used to hold its worker slot for its whole spread, so with one slot the second
    # batch only began once the first had ended, and fired its probes in a burst.
    from workers.app import client

    store = Store.from_url(redis_url)
    url = demo_service_factory("s").url.rstrip("/")
    tx = {
        "transaction_name": "get",
        "entrypoint_url": "http://shop.example.com/",
        "steps": [{"method": "GET", "url": "/api/products"}],
    }
    rid = "one-slot"
    store.create_rollout(
        {
            "id": rid,
            "state": "running",
            "step": 0,
            "attempt": 0,
            "transactions": [tx],
            "config": {"stable": {"url": url}, "canary": {"url": url}},
        }
    )
    argv = [sys.executable, "-m", "canary.cli.worker", "--queues", "slot1", "-c", "1"]
    proc = ManagedProcess(
        "worker", [*argv, "--broker", redis_url], log_path=tmp_path / "worker.log", cwd=ROOT
    )
    with proc:
        proc.wait_for_log(" ready.", timeout=START_CEILING_S)
        spread, batches = 6.0, 4
        start_at = time.time() + 1.0
        with client(redis_url) as app:
            for j in range(batches):
                spec = BatchSpec(
                    rollout_id=rid,
                    window="s0a0",
                    batch_id=f"s0a0.get.{j}",
                    transaction="get",
                    transaction_def=tx,
                    targets={v: VersionTarget(url=url) for v in ("stable", "canary")},
                    count=3,
                    slot=j,
                    slots=batches,
                    series_size=3 * batches,
                    start_at=start_at,
                    spread_s=spread,
                    window_batches=batches,
                    environment="slot1",
                )
                app.send_task(
                    "canary.probe_batch", args=[spec.to_dict()], queue="canary.probe.slot1"
                )
        deadline = time.time() + 60
        while len(store.recorded_batches(rid, "s0a0")) < batches:
            assert time.time() < deadline, proc.log_tail()
            time.sleep(0.1)
    results = store.window_results(rid, "s0a0")
    assert len(results) == 2 * 3 * batches
    # Every batch's probes started in the first half of the spread, none in a late burst.
    meta = store.window_accounting(rid, "s0a0")["meta"]
    started = {batch_id: m["started"] - start_at for batch_id, m in meta.items()}
    assert max(started.values()) < spread / 2, started
    assert all(m["late"] == 0 for m in meta.values()), meta
    assert min(r.t for r in results) < start_at + 1.0 and max(r.t for r in results) > start_at + 4.0


def test_no_broker_is_a_clear_error(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "canary.cli.worker", "--queues", "x"],
        capture_output=True,
        text=True,
        timeout=START_CEILING_S,
        env={"PATH": "/usr/bin:/bin"},
        cwd=ROOT,
    )
    assert r.returncode == 2 and "no broker" in r.stderr
