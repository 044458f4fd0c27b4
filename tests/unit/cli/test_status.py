"""`canary rollout status` fits 80 columns, says steps in words, and shows how rollouts ended."""

from __future__ import annotations

from typing import Any

import pytest

from canary.cli.status import detail_lines, table_lines


def record(rid: str, state: str, step: int, weight: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": rid,
        "state": state,
        "step": step,
        "weight": weight,
        "weights": [0, 5, 10, 30, 60, 90, 100],
        "created_at": 1_790_000_000.0,
        "config": {
            "stable": {"url": "http://10.0.0.5:8080", "version": "1.4.2"},
            "canary": {"url": "http://10.0.0.6:8080", "version": "1.5.0-rc.1"},
        },
        **extra,
    }


RECORDS = [
    record(
        "shop-faulty-20261201-194256-ad530c",
        "rolled_back",
        2,
        0,
        finished_at=1_790_000_090.0,
        reasons=[
            "checkout: canary success 82.0% (41/50) vs stable 100.0% (50/50), beyond the "
            "tolerance of 2 points",
            "search: p95 1,203 ms vs 310 ms",
        ],
        decisions=[
            {"window": "s1a0", "action": "increase", "weight": 10, "reasons": ["fine"]},
            {"window": "s2a0", "action": "rollback", "weight": 30, "reasons": ["checkout: bad"]},
        ],
    ),
    record(
        "shop-healthy-20261201-194256-aaaaaa",
        "paused",
        2,
        10,
        decisions=[{"window": "s1a0", "action": "hold", "weight": 10, "reasons": ["paused"]}],
    ),
    record("shop-new-20261201-194256-bbbbbb", "running", 0, 0),
]


def test_the_list_fits_80_columns_and_says_how_each_ended() -> None:
    lines = table_lines(RECORDS, 80)
    assert all(len(line) <= 80 for line in lines), [len(line) for line in lines]
    text = "\n".join(lines)
    assert "rolled back" in text and "rolled_back" not in text
    assert "└ rolled back (traffic on stable): checkout: canary success 82.0%" in text
    assert "└ paused at weight 10%, next 30%; last: hold (paused)" in text
    assert "└ weight 0%, next 5%; no decision yet" in text
    assert lines[0].split() == ["ID", "STATE", "STEP", "CANARY"]
    assert "3 of 7" in lines[3]


def test_one_rollout_in_words() -> None:
    paused = detail_lines(RECORDS[1], 80)
    assert "paused at step 3 of 7 (weight 10%, next 30%)" in paused
    ended = detail_lines(RECORDS[0], 80)
    assert all(len(line) <= 80 for line in ended)
    assert "step 3 of 7 (weight 0%)" in ended
    assert any(line.startswith("ended ") and "rolled back" in line for line in ended)
    assert any("search: p95" in line for line in ended)
    assert ended[-1].startswith("  s2a0: rollback at 30%")


def test_the_command_on_a_real_store_at_80_columns(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from canary.cli.main import main
    from canary.store import Store

    store = Store.from_url(redis_url)
    for r in RECORDS:
        store.create_rollout(r)
    # A record whose versions have no url must not break the view (it once raised KeyError).
    store.create_rollout({**RECORDS[2], "id": "bare-1", "config": {"stable": {}, "canary": {}}})
    monkeypatch.setenv("CANARY_REDIS_URL", redis_url)
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["rollout", "status"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert all(len(line) <= 80 for line in listed) and len(listed) == 1 + 2 * 4
    assert main(["rollout", "status", "bare-1"]) == 0
    assert capsys.readouterr().out.startswith("bare-1  [running]\nstable -\ncanary -\n")
