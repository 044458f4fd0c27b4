"""The verdict of a rollout record, and what each Flagger hook answers for it."""

from __future__ import annotations

from typing import Any

import pytest

from canary.gate.flagger import status_for
from canary.gate.verdict import from_record, start_failed, starting


def _record(state: str, step: int = 0, **over: Any) -> dict[str, Any]:
    return {
        "id": "gate-shop-abc",
        "state": state,
        "step": step,
        "attempt": 0,
        "weights": [0, 50, 100],
        "weight": [0, 50, 100][step],
        "created_at": 100.0,
        "decisions": [{"action": "increase", "reasons": ["canary within tolerance"]}],
        "reasons": ["checkout: canary success 40.0% (4/10) vs stable 100.0% (10/10)"],
        "canary_failures": 6,
        **over,
    }


@pytest.mark.parametrize(
    ("state", "step", "word", "isolated"),
    [
        ("running", 0, "running", "pending"),
        ("paused", 1, "running", "passed"),
        ("running", 2, "running", "passed"),
        ("promoted", 2, "pass", "passed"),
        ("rolled_back", 0, "fail", "failed"),
        ("rolled_back", 2, "fail", "passed"),
        ("failed", 1, "fail", "passed"),
        ("aborted", 0, "fail", "failed"),
    ],
)
def test_states_map_to_verdicts(state: str, step: int, word: str, isolated: str) -> None:
    v = from_record("shop-1", _record(state, step), {}, now=110.0)
    assert (v.verdict, v.isolated) == (word, isolated)
    assert v.to_json()["verdict"] == word and v.to_json()["name"] == "shop-1"


def test_reasons_are_the_last_decision_while_running_and_the_final_ones_after() -> None:
    assert from_record("n", _record("running", 1), {}, now=0).reasons == ["canary within tolerance"]
    final = from_record("n", _record("rolled_back"), {}, now=0)
    assert final.reasons[0].startswith("checkout: canary success 40.0%")
    fresh = from_record("n", _record("running", decisions=[]), {}, now=0)
    assert fresh.reasons and "no decision yet" in fresh.reasons[0]


def test_metrics_are_flat_numbers_from_the_record_and_the_last_decision() -> None:
    last = {
        "canary": {"n": 10, "success_rate": 40.0, "p95_ms": 12.5049, "p50_ms": float("nan")},
        "stable": {"n": 10, "success_rate": 100.0, "p95_ms": 11.0},
    }
    m = from_record("n", _record("running", 1, finished_at=None), last, now=130.0).metrics
    assert (
        m["step"] == 2 and m["steps"] == 3 and m["nominal_weight"] == 50 and m["elapsed_s"] == 30.0
    )
    assert m["canary_success_rate"] == 40.0 and m["stable_p95_ms"] == 11.0
    assert m["canary_p95_ms"] == 12.5  # rounded for people; the record keeps the rest
    assert "canary_p50_ms" not in m  # NaN is left out: strict JSON
    assert all(not isinstance(v, dict | list) for v in m.values())


def test_a_start_no_worker_took_is_a_failure_not_a_stall() -> None:
    assert starting("n", "gate-x", 3.0).verdict == "running"
    failed = start_failed("n", "gate-x", 61.0)
    assert failed.verdict == "fail" and "workers" in failed.reasons[0]


@pytest.mark.parametrize(
    ("state", "step", "expected"),
    [
        # pre-rollout, rollout, confirm-promotion, rollback
        ("running", 0, (425, 200, 425, 404)),
        ("running", 1, (200, 200, 425, 404)),
        ("promoted", 2, (200, 200, 200, 404)),
        ("rolled_back", 0, (403, 403, 403, 200)),
        ("rolled_back", 2, (403, 403, 403, 200)),
    ],
)
def test_flagger_statuses(state: str, step: int, expected: tuple[int, ...]) -> None:
    v = from_record("n", _record(state, step), {}, now=0)
    hooks = ("pre-rollout", "rollout", "confirm-promotion", "rollback")
    assert tuple(status_for(h, v) for h in hooks) == expected


def test_rollback_of_an_analysis_that_never_started_is_404() -> None:
    assert status_for("rollback", None) == 404
