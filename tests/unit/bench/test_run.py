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


def _run(kind: str, bad: bool, engine: dict[str, Any], kayenta_exposure: float) -> dict[str, Any]:
    def judged(outcome: str, exposure: float, **kw: Any) -> dict[str, Any]:
        base = {
            "outcome": outcome,
            "end_t": 1500.0,
            "rollback_t": None,
            "rollback_weight": None,
            "final_weight": 100,
            "exposure": exposure,
            "bad_exposure": exposure,
            "predictive": False,
            "holds": 0,
            "seconds": 0.1,
            "reasons": ["r"],
        }
        return {**base, **kw}

    return {
        "kind": kind,
        "seed": 7,
        "noise": "alt",
        "truth": {"kind": kind, "bad": bad, "onset_t": 0.0 if bad else None, "breach_t": None},
        "judges": {
            "engine": judged(**engine),
            "kayenta": judged("rolled_back", kayenta_exposure, rollback_t=300.0),
        },
    }


def test_exposure_medians_for_synthetic_rows_and_the_ratio_to_kayenta() -> None:
    from canary.bench.run import summarize

    rolled = {"outcome": "rolled_back", "rollback_t": 60.0}
    runs = [
        _run("error-step", True, {**rolled, "exposure": 4.0}, 16.0),
        _run("latency-step", True, {**rolled, "exposure": 6.0}, 24.0),
        # Recorded fleet rows are short: they pull the pooled median down.
        *(_run("fleet-bad", True, {**rolled, "exposure": 0.5}, 1.0) for _ in range(3)),
    ]
    table = summarize(runs, ["engine", "kayenta"])
    eng = table["engine"]
    assert eng["median_exposure"] == 0.5 and eng["median_exposure_synthetic"] == 5.0
    assert eng["exposure_ratio_kayenta"] == 0.5
    assert eng["exposure_ratio_kayenta_synthetic"] == 0.25
    assert table["kayenta"]["exposure_ratio_kayenta_synthetic"] == 1.0


def test_explain_lists_every_wrong_verdict_with_time_weight_and_reason() -> None:
    from canary.bench.run import explain, render_explain

    false = {
        "outcome": "rolled_back",
        "exposure": 1.0,
        "rollback_t": 42.0,
        "rollback_weight": 5,
        "reasons": ["checkout: canary latency about +30% over stable"],
    }
    runs = [
        _run("warm-up", False, false, 1.0),
        _run("identical", False, {"outcome": "promoted", "exposure": 9.0}, 1.0),
        _run(
            "low-volume", False, {"outcome": "incomplete", "exposure": 9.0, "final_weight": 60}, 1.0
        ),
        _run("error-step", True, {"outcome": "promoted", "exposure": 9.0}, 1.0),
    ]
    items = explain(runs, "engine")
    assert [(e["what"], e["kind"]) for e in items] == [
        ("false rollback", "warm-up"),
        ("not promoted", "low-volume"),
        ("missed", "error-step"),
    ]
    assert items[0]["t"] == 42.0 and items[0]["weight"] == 5 and items[0]["seed"] == 7
    assert items[1]["weight"] == 60
    text = render_explain(items, "engine")
    assert "warm-up seed 7: t=42s at 5%" in text and "+30% over stable" in text


def test_the_rollback_weight_is_what_the_canary_carried() -> None:
    rec, _ = generate("error-step", 0)
    res = outcome(rec, _lines((60.0, 10, "increase"), (90.0, 0, "rollback")))
    assert res["rollback_weight"] == 10
