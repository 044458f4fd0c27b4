"""The engine on the bench's generator: the classes of the held-out findings (issue 13), one draw
each, replayed exactly as `canary replay` does."""

from __future__ import annotations

from typing import Any

import pytest

from canary.analysis.settings import EngineSettings
from canary.bench.scenarios import Truth, generate
from canary.replay import replay


def _replay(kind: str, seed: int) -> tuple[list[dict[str, Any]], Truth]:
    rec, truth = generate(kind, seed)
    return list(replay(rec, EngineSettings())), truth


def _rollback(lines: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((ln for ln in lines if ln.get("action") == "rollback"), None)


@pytest.mark.parametrize("kind", ["infra-step", "very-low-volume", "many-txns", "warm-up"])
def test_healthy_classes_are_promoted(kind: str) -> None:
    # Before: an infrastructure step under both versions held on stable's health until the
    # fail-safe rolled back; a warming canary was rolled back in its first step; low volume
    # was held to the end.
    lines, _ = _replay(kind, 1)
    assert lines[-1]["outcome"] == "promoted", [ln.get("reasons", [""])[0] for ln in lines[-4:]]


@pytest.mark.parametrize("kind", ["saturation", "leak"])
def test_saturation_and_leak_roll_back_on_a_forecast_before_the_breach(kind: str) -> None:
    lines, truth = _replay(kind, 2)
    rb = _rollback(lines)
    assert rb is not None and rb["predictive"], lines[-2:]
    assert truth.breach_t is not None and rb["t"] < truth.breach_t
    assert "forecast" in rb["reasons"][0]


def test_one_bad_transaction_of_twelve_is_found() -> None:
    lines, _ = _replay("one-bad-of-12", 1)
    rb = _rollback(lines)
    assert rb is not None and rb["t"] < 300, lines[-2:]
    assert rb["reasons"][0].startswith("t")  # named by its transaction (t00..t11)
