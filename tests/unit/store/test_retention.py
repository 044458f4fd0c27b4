"""CANARY_RESULTS_TTL: how long results are kept, in seconds or days/hours, checked at start."""

from __future__ import annotations

import pytest

from canary.errors import ConfigError
from canary.store.retention import (
    DEFAULT_RESULTS_TTL_S,
    FINISHED_TTL_S,
    finished_ttl_s,
    results_ttl_s,
)


def test_unset_keeps_results_a_month(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CANARY_RESULTS_TTL", raising=False)
    assert results_ttl_s() == DEFAULT_RESULTS_TTL_S == 30 * 86400


@pytest.mark.parametrize(
    ("raw", "seconds"), [("604800", 604800), ("7d", 604800), ("36h", 129600), ("90D", 90 * 86400)]
)
def test_seconds_days_or_hours(monkeypatch: pytest.MonkeyPatch, raw: str, seconds: int) -> None:
    monkeypatch.setenv("CANARY_RESULTS_TTL", raw)
    assert results_ttl_s() == seconds


@pytest.mark.parametrize("raw", ["soon", "3600", "0d", "-7d", "inf", "nan", "7w"])
def test_anything_else_names_the_variable(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("CANARY_RESULTS_TTL", raw)
    with pytest.raises(ConfigError, match="CANARY_RESULTS_TTL"):
        results_ttl_s()


def test_a_finished_rollout_outlives_its_results() -> None:
    assert finished_ttl_s(7 * 86400) == FINISHED_TTL_S
    assert finished_ttl_s(90 * 86400) == 90 * 86400
