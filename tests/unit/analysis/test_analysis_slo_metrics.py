"""SLO (defaults, dict round trip, validation) and Stats summaries."""

from __future__ import annotations

import math

import pytest

from canary.analysis.metrics import summarize, summarize_version
from canary.analysis.slo import SLO
from canary.errors import ConfigError
from canary.probing.result import TransactionResult


def test_slo_defaults_and_round_trip() -> None:
    slo = SLO()
    assert slo.success_threshold == 99.0 and slo.error_budget == 5
    assert slo.latency_p95_ms is None and slo.rollback_on_error_budget is False
    custom = SLO(latency_p95_ms=800, error_budget=50)
    assert SLO.from_dict(custom.to_dict()) == custom
    assert (
        SLO.from_dict({"latency_p95_ms": 800, "max_latency_increase_pct": 10}).latency_p95_ms == 800
    )


def test_slo_rejects_unknown_and_out_of_range_fields() -> None:
    with pytest.raises(ConfigError, match="unknown field"):
        SLO.from_dict({"succes_threshold": 99})
    with pytest.raises(ConfigError, match="success_threshold"):
        SLO.from_dict({"success_threshold": 120})


def r(version: str, txn: str, ok: bool, ms: float) -> TransactionResult:
    return TransactionResult(t=0.0, version=version, transaction=txn, ok=ok, latency_ms=ms)


def test_summarize_by_version_and_transaction() -> None:
    results = [r("canary", "a", i != 0, 10.0 * (i + 1)) for i in range(10)]
    results += [r("stable", "a", True, 5.0), r("canary", "b", True, 1.0)]
    s = summarize(results)
    assert set(s) == {("canary", "a"), ("stable", "a"), ("canary", "b")}
    a = s[("canary", "a")]
    assert (a.n, a.ok, a.success_rate, a.error_rate_pct) == (10, 9, 90.0, 10.0)
    assert a.p50_ms == pytest.approx(55.0) and a.p95_ms == pytest.approx(95.5)
    assert a.mean_ms == pytest.approx(55.0)
    assert summarize_version(results, "canary").n == 11


def test_empty_stats_are_nan_and_json_none() -> None:
    s = summarize_version([], "canary")
    assert s.n == 0 and math.isnan(s.success_rate)
    assert s.to_dict()["success_rate"] is None
