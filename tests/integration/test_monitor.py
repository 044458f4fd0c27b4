"""Continuous monitoring of stable with real Redis, a real Celery beat and workers, a demo service."""

from __future__ import annotations

import itertools
import json
import threading
import time
from pathlib import Path

import pytest

from canary.cli.main import main
from canary.local import LocalFleet, ManagedProcess
from canary.monitor import load_monitor
from canary.store import Store
from tests.fixtures.services import DemoFactory

ROOT = Path(__file__).resolve().parents[2]
BROWSE = ROOT / "configs" / "transactions" / "demo-browse.yaml"


def _monitor_file(tmp_path: Path, url: str, interval: float) -> Path:
    path = tmp_path / "monitor.yaml"
    path.write_text(
        f"service: shop\nurl: {url}\ntransactions: [{BROWSE}]\ninterval: {interval}\nruns: 1\n"
    )
    return path


def test_store_keeps_monitors_and_gives_each_tick_to_one_caller(
    redis_url: str, tmp_path: Path
) -> None:
    store = Store.from_url(redis_url)
    record = load_monitor(_monitor_file(tmp_path, "http://127.0.0.1:1", 30))
    assert store.save_monitor(record) is True
    assert store.save_monitor(record) is False  # replaced
    assert [m["service"] for m in store.list_monitors()] == ["shop"]
    assert store.load_monitor("shop") == record

    got: list[float | None] = []
    barrier = threading.Barrier(16)

    def claim() -> None:
        mine = Store.from_url(redis_url)
        barrier.wait()
        got.append(mine.claim_monitor_tick("shop", 30.0))

    threads = [threading.Thread(target=claim) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(1 for g in got if g is not None) == 1
    assert store.claim_monitor_tick("shop", 30.0) is None  # not due for another 30 s
    assert store.remove_monitor("shop") is True and store.remove_monitor("shop") is False
    assert store.list_monitors() == []
    # Removing forgets the tick too: a monitor added again is probed at once.
    assert store.claim_monitor_tick("shop", 30.0) is not None


def test_beat_keeps_the_stable_history_growing_until_the_monitor_is_removed(
    redis_url: str,
    tmp_path: Path,
    demo_service_factory: DemoFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    interval = 2.0
    stable = demo_service_factory("stable")
    monkeypatch.setenv("CANARY_REDIS_URL", redis_url)
    store = Store.from_url(redis_url)
    assert main(["monitor", "add", str(_monitor_file(tmp_path, stable.url, interval))]) == 0

    def size() -> int:
        return store.history_size("shop", "demo-browse")

    with LocalFleet(
        tmp_path / "fleet",
        redis_url=redis_url,
        beat=True,
        env={"CANARY_MONITOR_TICK_S": "0.5"},
        probe_concurrency=4,
        control_concurrency=2,
    ) as fleet:
        assert fleet.status()["beat"]
        # A second beat (say, a redundant deployment) must not double the probes.
        assert fleet.beat_process is not None
        second = ManagedProcess(
            "beat-2",
            [*fleet.beat_process.argv[:-4], "--schedule", str(tmp_path / "beat-2"), "-l", "INFO"],
            env=fleet.beat_process.env,
            log_path=tmp_path / "beat-2.log",
        )
        request.addfinalizer(second.stop)
        second.start().wait_for_log("beat: Starting", 20)
        deadline = time.monotonic() + 15
        while size() < 5 and time.monotonic() < deadline:
            time.sleep(0.2)
        history = store.history("shop", "demo-browse")
        assert len(history) >= 5, fleet.beat_process.log_tail()
        assert all(r.ok and r.version == "stable" for r in history), history
        # One probe per interval: no double ticks, whatever the beat's own period (0.5 s).
        starts = [r.t for r in history]
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert min(gaps) > interval / 2, gaps
        span = starts[-1] - starts[0]
        assert len(history) <= span / interval + 2, (len(history), span)

        capsys.readouterr()
        assert main(["monitor", "list", "--json"]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert listed[0]["service"] == "shop" and listed[0]["history"]["demo-browse"] >= 5

        assert main(["monitor", "remove", "shop"]) == 0
        time.sleep(1.5)  # a probe already sent may still land
        stopped_at = size()
        time.sleep(2.5 * interval)
        assert size() == stopped_at
        assert fleet.status()["beat"] and second.alive
        second.stop()
    assert all(not p.alive for p in [*fleet.processes(), second])
