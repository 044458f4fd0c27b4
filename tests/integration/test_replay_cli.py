"""`canary export` against a real Redis and `canary replay` as a process: output and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from canary.probing.result import TransactionResult
from canary.store import Store

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
