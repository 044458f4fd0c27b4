"""When a forecast may act: the latency-tolerance trend screen against the wander."""

from __future__ import annotations

import math

import numpy as np

from canary.analysis.engine import AnalysisEngine, EngineSettings
from canary.analysis.ledger import Ledger
from canary.analysis.predict import _tolerance, trend_bar
from canary.analysis.slo import SLO

# The canary-minus-stable ratio (log) of a healthy alt "wander" draw over 23 buckets (15 s), in
# percent: both versions wander by themselves by several percent over minutes.
WANDER = [-13.3, -9.9, -33.4, -15.3, -7.0, 8.2, -19.5, -15.7, -2.5, -13.5, -2.3, -7.1]
WANDER += [-5.1, 6.6, -2.4, 5.6, 2.4, 4.2, -2.5, 15.2, 12.0, 2.4, 16.2]


def _ledger() -> Ledger:
    return AnalysisEngine(SLO(), EngineSettings(), ["a", "b", "c"]).ledger


def test_a_rise_the_wander_can_make_by_itself_is_no_trend() -> None:
    values = [v / 100.0 for v in WANDER]
    variances = [0.03**2] * len(values)
    bar = trend_bar(4.5, 4)
    ledger = _ledger()
    h = 8
    # Against the buckets' noise alone the rise is a trend (what rolled this canary back) ...
    assert _tolerance(ledger, "all transactions", values, variances, h, bar) is not None
    # ... but not against a wander of 7.7% (sd of the difference) measured on stable.
    drift = math.log1p(0.077) ** 2
    assert _tolerance(ledger, "all transactions", values, variances, h, bar, drift) is None


def test_a_drift_far_beyond_the_wander_still_rolls_back() -> None:
    # About 12% a minute for six minutes, with the buckets' noise.
    values = list(0.03 * np.arange(23) + np.random.default_rng(3).normal(0, 0.03, 23))
    variances = [0.03**2] * len(values)
    drift = math.log1p(0.077) ** 2
    found = _tolerance(
        _ledger(), "all transactions", values, variances, 8, trend_bar(4.5, 4), drift
    )
    assert found is not None and "past the 10% tolerance" in found.reason
