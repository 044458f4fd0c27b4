"""Schedules: weights from initial/step/max or an explicit list, durations."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from canary.errors import ConfigError
from canary.rollout.config import Schedule, load_rollout, parse_duration


def test_default_schedule_is_five_then_plus_five() -> None:
    w = Schedule().weights()
    assert w[:3] == [5, 10, 15] and w[-1] == 100 and len(w) == 20


def test_last_step_is_capped_at_max_weight() -> None:
    assert Schedule(initial_weight=10, step_weight=30, max_weight=100).weights() == [
        10,
        40,
        70,
        100,
    ]
    assert Schedule(initial_weight=10, step_weight=30, max_weight=50).weights() == [10, 40, 50]


def test_explicit_steps_win() -> None:
    assert Schedule(steps=[5, 25, 100]).weights() == [5, 25, 100]
    with pytest.raises(ValidationError, match="increase"):
        Schedule(steps=[5, 5, 100])


def test_initial_above_max_is_rejected() -> None:
    with pytest.raises(ValidationError, match="initial_weight"):
        Schedule(initial_weight=60, max_weight=50)


@pytest.mark.parametrize(
    ("text", "seconds"), [(30, 30.0), ("30s", 30.0), ("2m", 120.0), ("500ms", 0.5), ("1h", 3600.0)]
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_bad_duration_says_what_it_wants() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")
    with pytest.raises(ValidationError, match="between 1s and 24h"):
        Schedule(step_interval="0.5s")


def test_pauses_sit_between_weights() -> None:
    s = Schedule.model_validate(
        {"steps": [{"pause": {}}, 5, {"pause": {"duration": "2m"}}, 50, 100]}
    )
    assert s.weights() == [5, 50, 100]
    assert s.pauses() == {-1: None, 0: 120.0}


def test_a_trailing_pause_is_rejected() -> None:
    with pytest.raises(ValidationError, match="cannot be last"):
        Schedule.model_validate({"steps": [5, 100, {"pause": {}}]})


def test_unknown_engine_settings_are_load_errors(tmp_path: Path) -> None:
    tx = Path(__file__).resolve().parents[3] / "configs" / "transactions" / "demo-browse.yaml"
    f = tmp_path / "r.yaml"
    f.write_text(
        "name: r\nstable: {url: 'http://127.0.0.1:1'}\ncanary: {url: 'http://127.0.0.1:2'}\n"
        f"transactions: [{tx}]\nanalysis:\n  engine: {{alpah: 0.1}}\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_rollout(f)
    assert f"{f}:6:11: analysis.engine: unknown field(s) alpah" in str(exc.value)
