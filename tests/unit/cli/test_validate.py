"""`canary validate` tells rollout, monitor, recording and transaction files apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from canary.cli.main import main

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE_ROLLOUT = ROOT / "configs" / "rollouts" / "example.yaml"
TX = ROOT / "configs" / "transactions" / "demo-browse.yaml"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    code = main(["validate", *argv])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_a_rollout_file_is_checked_as_a_rollout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, str(EXAMPLE_ROLLOUT), str(TX))
    assert (code, out) == (0, [])
    assert "2 of 2 file(s) valid" in err and "rollout" in err and "transaction" in err


def test_a_bad_rollout_names_its_own_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "shop.yaml"
    bad.write_text(
        "name: shop\n"
        "stable: {url: 'http://s:1'}\n"
        "canary: {url: 'http://c:1'}\n"
        f"transactions: ['{TX}']\n"
        "schedule: {initial_weight: 500}\n"
    )
    code, out, _ = run(capsys, str(bad))
    assert code == 2
    assert len(out) == 1 and out[0].startswith(f"{bad}:5:") and "schedule.initial_weight" in out[0]


def test_a_monitor_file_is_checked_as_a_monitor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "mon.yaml"
    good.write_text(f"service: shop\nurl: http://s:1\ntransactions: ['{TX}']\ninterval: 30\n")
    code, out, err = run(capsys, str(good))
    assert (code, out) == (0, []) and "monitor" in err
    good.write_text(f"service: shop\nurl: nope\ntransactions: ['{TX}']\n")
    code, out, _ = run(capsys, str(good))
    assert code == 2 and len(out) == 1 and ":2:" in out[0] and "url" in out[0]


def test_a_recording_is_checked_by_the_replay_parser(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rec = {
        "format": "canary-replay/1",
        "name": "r",
        "rollout": {
            "initial_weight": 5,
            "step_weight": 5,
            "max_weight": 100,
            "step_interval_s": 60,
        },
        "transactions": ["a"],
        "observations": [
            {"t": 0, "version": "canary", "transaction": "b", "ok": True, "latency_ms": 1}
        ],
    }
    path = tmp_path / "rec.json"
    path.write_text(json.dumps(rec, indent=1))
    code, out, _ = run(capsys, str(path))
    assert code == 2 and len(out) == 1 and "observations[0].transaction" in out[0]


def test_kind_can_be_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--kind", "transaction", str(EXAMPLE_ROLLOUT))
    assert code == 2 and any("transaction_name: is required" in line for line in out)
