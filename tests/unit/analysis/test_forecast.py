"""Predictive rollback: a real upward trend is caught before the breach; flat noise never is."""

from __future__ import annotations

import math

import numpy as np
import pytest

from canary.analysis.engine import AnalysisEngine, EngineSettings
from canary.analysis.forecast import forecast_breach, trend, weighted_trend
from canary.analysis.slo import SLO
from canary.probing.result import TransactionResult


def test_trend_sees_a_slope_and_not_noise() -> None:
    rng = np.random.default_rng(1)
    up = 300 + 5 * np.arange(30) + rng.normal(0, 10, 30)
    flat = 300 + rng.normal(0, 10, 30)
    assert trend(list(up)).t_stat > 10
    assert abs(trend(list(flat)).t_stat) < 3
    assert trend([1.0, 2.0]).t_stat == 0.0  # too short to say anything


def test_weighted_trend_measures_the_slope_against_known_noise() -> None:
    rng = np.random.default_rng(6)
    var = [0.05**2] * 20
    up = list(0.01 * np.arange(20) + rng.normal(0, 0.05, 20))
    slope, z, last = weighted_trend(up, var)
    assert 0.005 < slope < 0.015 and z > 4 and 0.1 < last < 0.3
    flat = list(0.07 + rng.normal(0, 0.05, 20))
    assert abs(weighted_trend(flat, var)[1]) < 3
    # A noisier bucket counts for less.
    assert weighted_trend([0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 100.0])[0] < 0.05


def test_a_trend_made_by_noise_the_variances_understate_is_discounted() -> None:
    # Buckets said to have sd 0.05 but wandering with sd 0.15 and lag-1 correlation 0.7:
    # the runs were not independent. Its z must be judged against the spread it really has.
    hits_known, hits_widened = 0, 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        e = np.empty(24)
        e[0] = rng.normal(0, 0.15)
        for i in range(1, 24):
            e[i] = 0.7 * e[i - 1] + rng.normal(0, 0.15 * math.sqrt(1 - 0.49))
        slope, z, _ = weighted_trend(list(e), [0.05**2] * 24)
        known = slope * math.sqrt(float(((np.arange(24) - 11.5) ** 2).sum())) / 0.05
        hits_known += known >= 4.5
        hits_widened += z >= 4.5
    assert hits_known > 20  # taken at their word, the variances see trends everywhere
    assert hits_widened <= max(5, hits_known // 10)
    # A real trend on noise the variances describe keeps its z.
    rng = np.random.default_rng(6)
    up = list(0.01 * np.arange(20) + rng.normal(0, 0.05, 20))
    assert weighted_trend(up, [0.05**2] * 20)[1] > 4


def test_forecast_breach_probability() -> None:
    rng = np.random.default_rng(2)
    rising = list(400 + 15 * np.arange(24) + rng.normal(0, 8, 24))  # at ~745, +60 per minute
    fc = forecast_breach(rising, 800.0, 16)
    assert fc.probability > 0.9
    assert fc.steps_to_cross is not None and fc.steps_to_cross <= 16
    flat = list(400 + rng.normal(0, 8, 24))
    assert forecast_breach(flat, 800.0, 16).probability < 0.01


def _stream(
    rng: np.random.Generator, seconds: int, canary_ms: object, *, rate: int = 3
) -> list[TransactionResult]:
    """Stable at a 300 ms median; the canary's median a function of time."""
    out = []
    for sec in range(seconds):
        for k in range(rate):
            t = sec + (k + rng.random()) / rate
            med_c = canary_ms(t)  # type: ignore[operator]
            for version, med in (("stable", 300.0), ("canary", med_c)):
                lat = med * math.exp(0.2 * rng.standard_normal())
                out.append(TransactionResult(t, version, "checkout", True, lat, 200))
    out.sort(key=lambda r: r.t)
    return out


def _history(rng: np.random.Generator) -> list[TransactionResult]:
    return [
        TransactionResult(
            -600 + i, "stable", "checkout", True, 300 * math.exp(0.2 * rng.standard_normal())
        )
        for i in range(600)
    ]


def _run(
    canary_ms: object, seconds: int, seed: int, slo: SLO | None = None
) -> list[tuple[float, object]]:
    rng = np.random.default_rng(seed)
    # A wide comparison tolerance, so that only the forecast can act on a trend that stays
    # within it until the objective is crossed.
    slo = slo or SLO(latency_p95_ms=800.0, max_latency_increase_pct=150.0)
    eng = AnalysisEngine(slo, EngineSettings(), ["checkout"], _history(rng))
    results = _stream(rng, seconds, canary_ms)
    out, i = [], 0
    for t in range(5, seconds + 1, 5):
        j = i
        while j < len(results) and results[j].t <= t:
            j += 1
        eng.observe(results[i:j])
        i = j
        d = eng.decide(float(t), 10, step_end=False)
        if d.action == "rollback":
            out.append((float(t), d))
            break
    return out


def test_clear_upward_trend_rolls_back_predictively_before_the_breach() -> None:
    # The canary's median climbs 60 ms a minute from 300 ms: its p95 (x1.39) passes 800 ms
    # at about 480 s.
    got = _run(lambda t: 300.0 + t, 600, seed=3)
    assert got, "no rollback"
    t, d = got[0]
    assert d.predictive  # type: ignore[attr-defined]
    assert t < 480
    reason = d.reasons[0]  # type: ignore[attr-defined]
    assert "checkout p95 forecast to exceed 800 ms within" in reason and "(p=" in reason


@pytest.mark.parametrize("seed", [4, 5])
def test_flat_noise_never_rolls_back_predictively(seed: int) -> None:
    assert _run(lambda t: 320.0, 600, seed=seed) == []


def test_a_ratio_rising_towards_the_tolerance_rolls_back_predictively() -> None:
    # No latency objective: the canary's median drifts away from stable's by 6% a minute from
    # t = 60 s and passes the 10% tolerance at t = 160 s.
    slo = SLO(max_latency_increase_pct=10.0)
    got = _run(lambda t: 300.0 * (1.0 + 0.001 * max(0.0, t - 60.0)), 600, seed=7, slo=slo)
    assert got, "no rollback"
    t, d = got[0]
    assert d.predictive  # type: ignore[attr-defined]
    assert d.metrics["forecast"]["metric"] == "latency_vs_stable"  # type: ignore[attr-defined]
    assert "tolerance" in d.reasons[0] and "over stable" in d.reasons[0]  # type: ignore[attr-defined]
    # The warm-up's first seconds are not in the series: at most one warm-up later.
    assert t < 300 + EngineSettings().warmup_s


@pytest.mark.parametrize("seed", [8, 9])
def test_a_steady_gap_within_tolerance_is_no_trend(seed: int) -> None:
    assert _run(lambda t: 321.0, 600, seed=seed, slo=SLO(max_latency_increase_pct=10.0)) == []


def test_the_trend_bar_rises_with_the_number_of_series_looked_at() -> None:
    from canary.analysis.predict import trend_bar

    assert trend_bar(4.5, 1) == 4.5
    assert 4.5 < trend_bar(4.5, 4) < trend_bar(4.5, 31) < 5.5
