"""bench-judge's scoring: exposure integrals, outcomes and the summary table."""

from __future__ import annotations

from typing import Any

from canary.bench.run import main, outcome
from canary.bench.scenarios import generate


def _lines(*rows: tuple[float, int, str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"t": t, "weight": w, "action": a, "reasons": [], "predictive": False} for t, w, a in rows
    ]
    last = rows[-1]
    out.append({"outcome": "rolled_back" if last[2] == "rollback" else "promoted", "t": last[0]})
    return out


def test_exposure_integrates_weight_until_rollback() -> None:
    rec, _ = generate("error-step", 0)  # starts at 5%
    res = outcome(rec, _lines((60.0, 10, "increase"), (90.0, 0, "rollback")), onset=70.0)
    # 5% for 60 s, then 10% for 30 s, in seconds at 100%.
    assert res["exposure"] == 5 * 60 / 100 + 10 * 30 / 100
    # From the onset at 70 s: 10% for 20 s.
    assert res["bad_exposure"] == 10 * 20 / 100
    assert res["rollback_t"] == 90.0 and res["outcome"] == "rolled_back"


def test_missed_canary_keeps_its_traffic_to_the_end() -> None:
    rec, _ = generate("error-step", 0)
    res = outcome(rec, _lines((60.0, 100, "promote")))
    assert res["rollback_t"] is None
    assert res["exposure"] == 5 * 60 / 100 + 100 * (1500 - 60) / 100


def test_main_rejects_unknown_scenarios_and_judges(capsys: Any) -> None:
    assert main(["--kinds", "nope"]) == 2
    assert "known:" in capsys.readouterr().err
    assert main(["--judges", "nope"]) == 2


def test_main_prints_the_table(capsys: Any) -> None:
    assert main(["--seeds", "1", "--kinds", "latency-step,identical", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "recall on bad canaries" in out and "median exposure on bad" in out


def test_the_table_gives_counts_and_95_percent_intervals(capsys: Any) -> None:
    assert main(["--seeds", "1", "--kinds", "identical", "--jobs", "1", "--no-recorded"]) == 0
    out = capsys.readouterr().out
    # 0 of 1 is no guarantee: its interval reaches far up.
    assert "0/1 [0-79%]" in out


def test_interval_of_zero_in_thirty() -> None:
    from canary.bench.run import _interval

    assert _interval(0, 30) == "0/30 [0-11%]"
