"""`canary export` against a real Redis and `canary replay` as a process: output and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from canary.probing.result import TransactionResult
from canary.replay import export_recording
from canary.store import Store
from tests.fixtures.services import DemoFactory
from tests.integration.test_controller import _config, _run

# The lead wires register() into canary/cli/main.py; until then the commands are driven
# through a parser that holds only them, which is the same code path below the parser.
DRIVER = (
    "import argparse, sys\n"
    "from canary.cli.replay import register\n"
    "p = argparse.ArgumentParser(prog='canary')\n"
    "register(p.add_subparsers(dest='command', required=True))\n"
    "a = p.parse_args(sys.argv[1:])\n"
    "sys.exit(a.func(a))\n"
)


def canary(*args: str, redis_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if redis_url:
        env["CANARY_REDIS_URL"] = redis_url
    return subprocess.run(
        [sys.executable, "-c", DRIVER, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def small_recording(tmp_path: Path) -> Path:
    obs = []
    for i in range(400):
        t = i * 0.5
        for v in ("stable", "canary"):
            obs.append(
                {
                    "t": t,
                    "version": v,
                    "transaction": "browse",
                    "ok": True,
                    "latency_ms": 50.0 + i % 7,
                }
            )
    doc = {
        "format": "canary-replay/1",
        "name": "tiny",
        "rollout": {
            "initial_weight": 50,
            "step_weight": 50,
            "max_weight": 100,
            "step_interval_s": 60,
        },
        "slo": {},
        "transactions": ["browse"],
        "observations": obs,
    }
    p = tmp_path / "tiny.json"
    p.write_text(json.dumps(doc))
    return p


def test_replay_prints_json_lines_and_exits_zero(tmp_path: Path) -> None:
    proc = canary("replay", str(small_recording(tmp_path)))
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(ln) for ln in proc.stdout.splitlines()]
    assert lines[0]["action"] == "promote" and lines[0]["weight"] == 100
    assert lines[-1] == {"outcome": "promoted", "t": 60.0}


def test_replay_with_a_config_changes_the_answer(tmp_path: Path) -> None:
    cfg = tmp_path / "analysis.yaml"
    cfg.write_text("rollout:\n  step_weight: 10\nanalysis:\n  min_samples: 5\n")
    proc = canary("replay", str(small_recording(tmp_path)), "--config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(ln) for ln in proc.stdout.splitlines()]
    assert lines[0]["weight"] == 60
    assert lines[-1]["outcome"] == "incomplete"


def test_broken_files_exit_two_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "canary-replay/1", "name": 3}')
    for path in (bad, tmp_path / "missing.json"):
        proc = canary("replay", str(path))
        assert proc.returncode == 2
        assert proc.stdout == ""
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    proc = canary("replay", str(bad))
    assert "bad.json:1:1: rollout: is required" in proc.stderr
    cfg = tmp_path / "analysis.yaml"
    cfg.write_text("analysis:\n  alpah: 0.1\n")
    proc = canary("replay", str(small_recording(tmp_path)), "--config", str(cfg))
    assert proc.returncode == 2 and "alpah" in proc.stderr and "Traceback" not in proc.stderr


def test_export_a_live_rollout_then_replay_it(tmp_path: Path, redis_url: str) -> None:
    store = Store.from_url(redis_url)
    store_events_at = time.time()
    base = store_events_at + 1.0  # results come after the canary first got traffic
    store.create_rollout(
        {
            "id": "shop-1",
            "name": "shop",
            "service": "shop",
            "config": {
                "schedule": {
                    "initial_weight": 50,
                    "step_weight": 50,
                    "max_weight": 100,
                    "step_interval": 60.0,
                }
            },
            "transactions": [{"transaction_name": "browse"}],
            "slo": {"success_threshold": 99.0, "error_budget": 5},
        }
    )
    store.add_history(
        "shop",
        [TransactionResult(base - 300 + i, "stable", "browse", True, 50.0) for i in range(60)],
    )
    store.add_window("shop-1", "s0a0")
    results = [
        TransactionResult(base + i * 0.5, v, "browse", True, 50.0 + i % 5)
        for i in range(200)
        for v in ("stable", "canary")
    ]
    store.append_event("shop-1", "weight", {"weight": 50})
    store.record_batch("shop-1", "s0a0", "b1", results)
    out = tmp_path / "shop.json"
    proc = canary("export", "shop-1", "-o", str(out), redis_url=redis_url)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["format"] == "canary-replay/1" and doc["transactions"] == ["browse"]
    assert len(doc["history"]) == 60
    assert len(doc["observations"]) == 400
    assert all(o["t"] >= 0 for o in doc["observations"])
    proc = canary("replay", str(out))
    assert proc.returncode == 0, proc.stderr

    proc = canary("export", "no-such-rollout", redis_url=redis_url)
    assert proc.returncode == 2
    assert "unknown rollout" in proc.stderr and "Traceback" not in proc.stderr


def test_an_exported_live_rollout_replays_to_the_same_decisions_at_the_same_steps(
    tmp_path: Path, redis_url: str, demo_service_factory: DemoFactory
) -> None:
    """A finished rollout of [20, 50, 100] exports its real schedule, and each stable run once."""
    path = _config(
        tmp_path,
        demo_service_factory("s").url,
        demo_service_factory("c").url,
        schedule={"steps": [20, 50, 100], "step_interval": 2},
    )
    # Batches in threads, as on workers: each window's probes run side by side over its step.
    final, events, _ = _run(redis_url, path, interim=True)
    assert final["state"] == "promoted"
    store = Store.from_url(redis_url)
    doc = export_recording(store, final["id"])
    assert doc["rollout"]["steps"] == [20, 50, 100]
    assert (doc["rollout"]["initial_weight"], doc["rollout"]["max_weight"]) == (20, 100)
    # The isolated check's stable runs, once each (they are in the service's history too).
    isolated = [r for r in store.window_results(final["id"], "s0a0") if r.version == "stable"]
    assert len(doc["history"]) == len(isolated)

    out = tmp_path / "live.json"
    out.write_text(json.dumps(doc))
    proc = canary("replay", str(out))
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[-1]["outcome"] == "promoted"
    live = [e["data"] for e in events if e["type"] == "decision" and e["data"]["weight"] > 0]
    assert [(d["weight"], d["action"]) for d in live] == [
        (20, "increase"),
        (50, "increase"),
        (100, "promote"),
    ]
    # The replay judges the same steps; its lines give the weight after the action, and by the
    # format the move to the last weight is the promotion.
    assert [(line["weight"], line["action"]) for line in lines[:-1]] == [
        (50, "increase"),
        (100, "promote"),
    ], proc.stdout
