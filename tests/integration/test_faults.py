"""The fault suite: real Redis, real Celery workers and demo services, with things going wrong.

Every test ends with the right decision, checks that each judged window holds exactly the
results of its recorded batches (none doubled) and that every other dispatched batch is
accounted as missing (none lost silently), and reads the traffic weight from a command router's
file, so "traffic back on stable" is checked where Redis cannot vouch for it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from canary.cli.rollouts import start
from canary.local import LocalFleet
from canary.rollout import state as st
from canary.rollout.config import load_rollout
from canary.store import Store
from tests.fixtures.services import DemoFactory

ROOT = Path(__file__).resolve().parents[2]
BROWSE = str(ROOT / "configs" / "transactions" / "demo-browse.yaml")
FLEET_ENV = {
    # Short enough that a killed worker's task comes back within a step.
    "CANARY_VISIBILITY_TIMEOUT": "4",
    "CANARY_REDIS_DEADLINE": "4",
    "CANARY_PROBE_THREADS": "32",
}

FleetFactory = Callable[..., LocalFleet]


@pytest.fixture()
def fleet_factory(tmp_path: Path) -> Iterator[FleetFactory]:
    """Start a LocalFleet with its own Redis (tests here kill and restart it)."""
    fleets: list[LocalFleet] = []

    def make(**kw: Any) -> LocalFleet:
        fleet = LocalFleet(
            tmp_path / f"fleet{len(fleets)}",
            env=FLEET_ENV,
            probe_concurrency=16,
            control_concurrency=4,
            **kw,
        )
        fleets.append(fleet)
        fleet.start()
        return fleet

    try:
        yield make
    finally:
        for fleet in fleets:
            fleet.stop(timeout=3)


def _rollout(
    tmp: Path,
    stable: str,
    canary: str,
    *,
    interval: float = 4,
    transactions: list[str] | None = None,
    per_step: int = 12,
    batch_size: int = 4,
    name: str = "fault",
) -> tuple[Path, Path]:
    weight_file = tmp / f"{name}.weight"
    weight_file.write_text("0\n")
    doc: dict[str, Any] = {
        "name": name,
        "stable": {"url": stable.rstrip("/")},
        "canary": {"url": canary.rstrip("/")},
        "transactions": transactions or [BROWSE],
        "schedule": {"steps": [50, 100], "step_interval": interval},
        "probes": {"per_step": per_step, "batch_size": batch_size, "concurrency": 4},
        "slo": {
            "success_threshold": 90,
            "max_latency_increase_pct": 300,
            "max_error_rate_increase_pp": 5,
        },
        "analysis": {"max_holds": 1, "min_samples": 8},
        "router": {
            "type": "command",
            "set_weight": f"echo {{{{ weight }}}} > {weight_file}",
            "promote": f"echo 100 > {weight_file}",
            "rollback": f"echo 0 > {weight_file}",
        },
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path, weight_file


def _start(fleet: LocalFleet, path: Path) -> str:
    cfg, txs = load_rollout(path)
    return start(fleet.redis_url, cfg, txs)


def _wait(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = check()
        except Exception:
            got = None
        if got:
            return got
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout:g}s waiting for {what}")


def _final(fleet: LocalFleet, rid: str, timeout: float = 60) -> dict[str, Any]:
    store = Store.from_url(fleet.redis_url)

    def done() -> dict[str, Any] | None:
        rec = store.load_rollout(rid)
        return rec if rec and st.is_final(rec["state"]) else None

    rec: dict[str, Any] = _wait(f"rollout {rid} to finish", done, timeout)
    return rec


def _in_window(fleet: LocalFleet, rid: str, window: str) -> None:
    """Wait until probes of ``window`` are running (a batch holds a claim)."""
    store = Store.from_url(fleet.redis_url)
    pattern = store.keys.claim(rid, window, "*")
    _wait(f"a running batch of {window}", lambda: store.r.keys(pattern), 60)


def _accounting(fleet: LocalFleet, rid: str) -> dict[str, dict[str, Any]]:
    """Per window: no result doubled, no batch lost without being accounted for."""
    store = Store.from_url(fleet.redis_url)
    out = {}
    for window in store.windows(rid):
        acc = store.window_accounting(rid, window)
        expected: dict[str, int] = acc["expected"]
        assert expected, f"{window}: dispatched batches were not saved"
        assert not acc["recorded"] & acc["missing"], window
        assert acc["recorded"] <= expected.keys(), window
        # Exactly the runs of the recorded batches (and the look-ahead of batches an interim
        # rollback cut short): a re-delivered batch was not counted twice. A batch runs at
        # most what it was dispatched with (fewer when probes too late to start are dropped,
        # e.g. by a batch taken over from a killed worker: its meta says how many).
        meta = acc["meta"]
        assert all(meta[b]["runs"] <= expected[b] for b in acc["recorded"]), (window, acc)
        runs = sum(meta[b]["runs"] for b in acc["recorded"]) + acc["lookahead"]
        assert acc["results"] == runs, (window, acc)
        if acc["sealed"]:
            assert acc["recorded"] | acc["missing"] == expected.keys(), (window, acc)
        out[window] = acc
    return out


def _weight(path: Path) -> int:
    return int(path.read_text().strip() or 0)


def _sweep_lock_expiry() -> float:
    """How long a worker of these tests holds kombu's re-delivery lock for, once taken."""
    from kombu.transport.redis import Channel

    code = (
        "import json; from workers.app import broker_transport_options as o; print(json.dumps(o()))"
    )
    got = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **FLEET_ENV},
        capture_output=True,
        text=True,
        check=True,
    )
    return float(json.loads(got.stdout).get("unacked_mutex_expire", Channel.unacked_mutex_expire))


@pytest.mark.parametrize(
    "holding_the_sweep_lock", [False, True], ids=["plain", "holding-sweep-lock"]
)
def test_probe_worker_killed_mid_batch(
    tmp_path: Path,
    fleet_factory: FleetFactory,
    demo_service_factory: DemoFactory,
    holding_the_sweep_lock: bool,
) -> None:
    """``holding_the_sweep_lock``: every worker takes kombu's re-delivery lock about once a
    second to put overdue unacknowledged tasks back (workers/app.py); a kill -9 in those few
    milliseconds leaves it held for as long as the holder asked, and the tasks the killed worker
    held (its batches' watch copies) come back only then. Taking the lock here as the dying
    worker would makes that unlucky kill happen every time."""
    from kombu.transport.redis import Channel

    expire = _sweep_lock_expiry() if holding_the_sweep_lock else 0.0
    fleet = fleet_factory()
    path, weight = _rollout(
        tmp_path, demo_service_factory("s").url, demo_service_factory("c").url, interval=6
    )
    rid = _start(fleet, path)
    _in_window(fleet, rid, "s1a0")
    assert fleet.probe_worker is not None and fleet.probe_worker.pid
    if holding_the_sweep_lock:
        store = Store.from_url(fleet.redis_url)
        # nx: a sweep of the control worker may hold it right now; then wait for its release.
        _wait(
            "the re-delivery lock to be free",
            lambda: store.r.set(Channel.unacked_mutex_key, "dead", px=int(expire * 1000), nx=True),
            10,
        )
    os.kill(fleet.probe_worker.pid, signal.SIGKILL)
    fleet.restart_worker("probe")
    final = _final(fleet, rid, timeout=150)
    assert final["state"] == "promoted", final.get("reasons")
    assert _weight(weight) == 100
    acc = _accounting(fleet, rid)
    assert all(a["sealed"] for a in acc.values()), acc
    missing = {w for w, a in acc.items() if a["missing"]}
    if not missing:
        # The killed batches were re-delivered to the new worker and recorded once.
        pids = {m["pid"] for m in acc["s1a0"]["meta"].values()}
        assert fleet.probe_worker.pid in pids
    else:
        # A re-delivery needs the new worker, the visibility timeout, a sweep and, when it was
        # held, the sweep lock's expiry: on a busy machine that can outlast the step's straggler
        # grace, and then giving up the killed window's batches as missing is the right outcome.
        # Which one happens is a matter of timing, so the test accepts either, but nothing else.
        assert missing == {"s1a0"}, acc


def test_control_worker_killed_mid_step(
    tmp_path: Path, fleet_factory: FleetFactory, demo_service_factory: DemoFactory
) -> None:
    fleet = fleet_factory()
    path, weight = _rollout(tmp_path, demo_service_factory("s").url, demo_service_factory("c").url)
    rid = _start(fleet, path)
    _in_window(fleet, rid, "s1a0")
    assert fleet.control_worker is not None and fleet.control_worker.pid
    os.kill(fleet.control_worker.pid, signal.SIGKILL)
    fleet.restart_worker("control")
    # Killed inside a task, the worker leaves the rollout's lock held until it expires (60 s).
    final = _final(fleet, rid, timeout=150)
    assert final["state"] == "promoted", final.get("reasons")
    assert _weight(weight) == 100
    acc = _accounting(fleet, rid)
    assert set(acc) == {"s0a0", "s1a0", "s2a0"}


def test_redis_restart_with_appendonly_keeps_the_rollout(
    tmp_path: Path, fleet_factory: FleetFactory, demo_service_factory: DemoFactory
) -> None:
    fleet = fleet_factory(appendonly=True)
    path, weight = _rollout(tmp_path, demo_service_factory("s").url, demo_service_factory("c").url)
    rid = _start(fleet, path)
    _in_window(fleet, rid, "s1a0")
    fleet.restart_redis(down_s=1.0)
    # A coordinator step cut off by the restart (its save and unlock lost) leaves the lock held
    # until it expires (60 s); its retry then judges the sealed window again.
    final = _final(fleet, rid, timeout=150)
    assert final["state"] == "promoted", final.get("reasons")
    assert _weight(weight) == 100
    _accounting(fleet, rid)


def test_redis_gone_past_the_deadline_sends_traffic_to_stable(
    tmp_path: Path, fleet_factory: FleetFactory, demo_service_factory: DemoFactory
) -> None:
    """Every rollout the control worker steers goes back to stable, from its memory."""
    fleet = fleet_factory(appendonly=True)
    stable, canary = demo_service_factory("s").url, demo_service_factory("c").url
    rollouts = {}
    for name in ("fault", "other"):
        path, weight = _rollout(tmp_path, stable, canary, interval=8, name=name)
        rollouts[_start(fleet, path)] = weight
    for weight in rollouts.values():
        _wait("traffic on the canary", lambda w=weight: _weight(w) == 50, 90)
    assert fleet.redis is not None
    fleet.redis.stop(timeout=10)
    # CANARY_REDIS_DEADLINE is 4 s: the coordinator acts on the routers without Redis.
    for weight in rollouts.values():
        _wait("traffic back on stable while Redis is away", lambda w=weight: _weight(w) == 0, 60)
    fleet.restart_redis()
    for rid in rollouts:
        final = _final(fleet, rid, timeout=90)
        assert final["state"] == "failed" and final["weight"] == 0
        assert any("Redis unreachable" in r for r in final["reasons"]), final["reasons"]
    time.sleep(2)  # nothing moves traffic again once Redis is back
    for rid, weight in rollouts.items():
        assert _weight(weight) == 0
        _accounting(fleet, rid)


def test_unreachable_canary_is_rolled_back_with_reasons(
    tmp_path: Path, fleet_factory: FleetFactory, demo_service_factory: DemoFactory
) -> None:
    fleet = fleet_factory()
    path, weight = _rollout(tmp_path, demo_service_factory("s").url, "http://127.0.0.1:9")
    rid = _start(fleet, path)
    final = _final(fleet, rid, timeout=90)
    assert final["state"] == "rolled_back" and _weight(weight) == 0
    assert final["reasons"]
    canary = [r for r in Store.from_url(fleet.redis_url).all_results(rid) if r.version == "canary"]
    assert canary and all(not r.ok and r.error for r in canary)
    acc = _accounting(fleet, rid)
    assert all(not a["missing"] for a in acc.values())


def test_probe_hanging_past_its_timeout_is_a_failed_result(
    tmp_path: Path, fleet_factory: FleetFactory, demo_service_factory: DemoFactory
) -> None:
    tx = yaml.safe_load(Path(BROWSE).read_text())
    tx["timeout"] = 1
    tx_path = tmp_path / "browse-1s.yaml"
    tx_path.write_text(yaml.safe_dump(tx))
    fleet = fleet_factory()
    path, weight = _rollout(
        tmp_path,
        demo_service_factory("s").url,
        demo_service_factory("c", latency_ms=20_000).url,
        transactions=[str(tx_path)],
    )
    rid = _start(fleet, path)
    final = _final(fleet, rid, timeout=90)
    assert final["state"] == "rolled_back" and _weight(weight) == 0
    canary = [r for r in Store.from_url(fleet.redis_url).all_results(rid) if r.version == "canary"]
    assert canary and all(not r.ok for r in canary)
    assert all("within 1s" in (r.error or "") for r in canary), canary[0].error
    # Each gave up at its own deadline rather than waiting for the service's 20 s answer.
    assert all(r.latency_ms < 20_000 for r in canary)
    acc = _accounting(fleet, rid)
    # No batch got stuck on the hanging service: every one of them reported.
    assert all(a["sealed"] and not a["missing"] for a in acc.values()), acc


def _cli(fleet: LocalFleet, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CANARY_REDIS_URL": fleet.redis_url}
    return subprocess.run(
        [sys.executable, "-m", "canary.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_operator_commands_act_at_once_during_a_long_step(
    tmp_path: Path, fleet_factory: FleetFactory, demo_service_factory: DemoFactory
) -> None:
    """A 5 min step: pause, resume, a replacing start and abort act before it ends."""
    fleet = fleet_factory()
    path, weight = _rollout(
        tmp_path, demo_service_factory("s").url, demo_service_factory("c").url, interval=300
    )
    calls = tmp_path / "calls"
    doc = yaml.safe_load(path.read_text())
    doc["router"]["rollback"] += f"; echo rollback >> {calls}"
    path.write_text(yaml.safe_dump(doc))
    rid = _start(fleet, path)
    store = Store.from_url(fleet.redis_url)
    _in_window(fleet, rid, "s0a0")

    paused = _cli(fleet, "rollout", "pause", rid)
    assert paused.returncode == 0 and "pause applied" in paused.stdout, paused.stderr
    assert (store.load_rollout(rid) or {})["state"] == "paused"
    assert _cli(fleet, "rollout", "resume", rid).returncode == 0
    assert (store.load_rollout(rid) or {})["state"] == "running"

    # A second rollout of the same service is refused, naming the running one...
    refused = _cli(fleet, "rollout", "start", str(path))
    assert refused.returncode == 2 and rid in refused.stderr, refused.stderr
    # ...unless it replaces it: the first one is aborted, and says by which.
    replaced = _cli(fleet, "rollout", "start", str(path), "--replace", "--json")
    assert replaced.returncode == 0, replaced.stderr
    second = json.loads(replaced.stdout)["id"]
    old = _final(fleet, rid, timeout=90)
    assert old["state"] == "aborted" and old["replaced_by"] == second and old["weight"] == 0
    assert "replaced by rollout " + second in old["reasons"][0]
    assert store.is_sealed(rid, "s0a0")  # its running batches are refused, not judged
    _in_window(fleet, second, "s0a0")
    assert store.service_holder("fault") == second

    aborted = _cli(fleet, "rollout", "abort", second)
    assert aborted.returncode == 0 and "abort applied" in aborted.stdout, aborted.stderr
    final = store.load_rollout(second)
    assert final is not None and final["state"] == "aborted" and final["weight"] == 0
    assert calls.read_text().split() == ["rollback", "rollback"] and _weight(weight) == 0
    # Both ended inside their first step: nothing waited for a step's end to act.
    for ended in (old, final):
        assert ended["finished_at"] < ended["window_started_at"] + 300
    commands = [e["data"] for _, e in store.read_events(rid) if e["type"] == "command"]
    assert [(c["command"], c["result"]) for c in commands] == [
        ("pause", "applied"),
        ("resume", "applied"),
        ("abort", "applied"),
    ]
    assert _cli(fleet, "rollout", "abort", second).returncode == 1  # already ended

    # Retried with the same configuration, and the two records say how they are linked.
    retried = _cli(fleet, "rollout", "retry", second, "--json")
    assert retried.returncode == 0, retried.stderr
    third = json.loads(retried.stdout)["id"]
    assert _wait("the retried rollout", lambda: store.load_rollout(third), 30)["retry_of"] == second
    assert any(
        e["type"] == "retried" and e["data"]["by"] == third for _, e in store.read_events(second)
    )
    assert _cli(fleet, "rollout", "abort", third).returncode == 0
