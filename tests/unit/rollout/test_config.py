"""Rollout-file checks that protect the probes and the schedule, each reported at file:line:col."""

from __future__ import annotations

from pathlib import Path

import pytest

from canary.errors import ConfigError
from canary.rollout.config import load_rollout

TX = Path(__file__).resolve().parents[3] / "configs" / "transactions" / "demo-browse.yaml"


def _load(tmp_path: Path, body: str) -> str:
    f = tmp_path / "r.yaml"
    f.write_text(
        "name: r\nstable: {url: 'http://127.0.0.1:1'}\ncanary: {url: 'http://127.0.0.1:2'}\n" + body
    )
    with pytest.raises(ConfigError) as exc:
        load_rollout(f)
    return str(exc.value)


@pytest.mark.parametrize(
    ("headers", "needle"),
    [
        ('{X-A: "ok\\r\\nX-Injected: 1"}', "must not contain CR, LF or NUL"),
        ('{X-A: "line\\nbreak"}', "must not contain CR, LF or NUL"),
        ("{'X A': v}", "is not a token"),
        ("{'X-A:': v}", "is not a token"),
    ],
)
def test_header_injection_is_refused_at_load(tmp_path: Path, headers: str, needle: str) -> None:
    f = tmp_path / "r.yaml"
    f.write_text(
        "name: r\nstable: {url: 'http://127.0.0.1:1'}\n"
        f"canary:\n  url: 'http://127.0.0.1:2'\n  headers: {headers}\ntransactions: [{TX}]\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_rollout(f)
    assert f"{f}:5:12: canary.headers" in str(exc.value) and needle in str(exc.value)


def test_a_missing_transaction_file_names_the_rollout_line(tmp_path: Path) -> None:
    text = _load(tmp_path, f"transactions:\n  - {TX}\n  - nope.yaml\n")
    assert f"{tmp_path / 'r.yaml'}:6:5: transactions[1]: nope.yaml: no such file" in text


@pytest.mark.parametrize("duration", ["-5", "0", "1.0e+12", "1000000", "'169h'"])
def test_a_pause_is_bounded(tmp_path: Path, duration: str) -> None:
    text = _load(
        tmp_path,
        f"transactions: [{TX}]\nschedule:\n  steps: [5, {{pause: {{duration: {duration}}}}}, 100]\n",
    )
    assert "schedule.steps[1]" in text and "more than 0 and at most 7 days" in text, text


def test_a_week_long_pause_is_fine(tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text(
        "name: r\nstable: {url: 'http://127.0.0.1:1'}\ncanary: {url: 'http://127.0.0.1:2'}\n"
        f"transactions: [{TX}]\nschedule:\n  steps: [5, {{pause: {{duration: 168h}}}}, 100]\n"
    )
    cfg, _ = load_rollout(f)
    assert cfg.schedule.pauses() == {0: 7 * 24 * 3600.0}
