"""Anytime-valid tests: false alarms under continuous monitoring stay below alpha; power holds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from canary.analysis.sequential import (
    Moments,
    bernoulli_log_e,
    bernoulli_log_e_vec,
    log_norm_cdf,
    log_norm_cdf_vec,
    mean_difference,
    mean_difference_vec,
    normal_mixture_log_e,
    normal_mixture_log_e_vec,
    normal_mixture_lower,
    rate_difference,
    rate_difference_vec,
)

ALPHA = 0.05
RUNS = 400
N = 3000
EVERY = 10  # monitored every 10 observations: 300 looks per run


def _ever_rejects_rate_diff(pc: float, ps: float, margin: float, seed: int) -> float:
    """Share of runs whose e-value ever reaches 1/alpha, looking every EVERY pairs."""
    rng = np.random.default_rng(seed)
    kc = np.cumsum(rng.random((RUNS, N)) < pc, axis=1)[:, EVERY - 1 :: EVERY]
    ks = np.cumsum(rng.random((RUNS, N)) < ps, axis=1)[:, EVERY - 1 :: EVERY]
    n = np.arange(EVERY, N + 1, EVERY, dtype=float)
    hits = np.zeros(RUNS, dtype=bool)
    for col in range(n.size):
        nn = np.full(RUNS, n[col])
        d, v = rate_difference_vec(nn, kc[:, col].astype(float), nn, ks[:, col].astype(float))
        le = normal_mixture_log_e_vec(d, v, margin, 0.02)
        hits |= le >= math.log(1 / ALPHA)
    return float(hits.mean())


@pytest.mark.parametrize(("p", "seed"), [(0.003, 1), (0.02, 2), (0.1, 3)])
def test_error_rate_difference_type_one_error_under_continuous_monitoring(
    p: float, seed: int
) -> None:
    # Identical versions, looked at 300 times each: a repeated fixed-sample test would
    # reject far more often than alpha; the mixture must not.
    assert _ever_rejects_rate_diff(p, p, 0.0, seed) <= ALPHA


def test_error_rate_difference_at_the_tolerance_is_still_the_null() -> None:
    # The canary is worse by exactly the tolerance: still not a regression.
    assert _ever_rejects_rate_diff(0.015, 0.01, 0.005, 4) <= ALPHA


def test_error_rate_difference_power_on_a_three_point_step() -> None:
    assert _ever_rejects_rate_diff(0.033, 0.003, 0.005, 5) >= 0.95


def _ever_rejects_log_mean(shift: float, margin: float, seed: int, runs: int = 300) -> float:
    rng = np.random.default_rng(seed)
    n_obs = 1500
    yc = shift + 0.4 * rng.standard_normal((runs, n_obs))
    ys = 0.4 * rng.standard_normal((runs, n_obs))
    idx = np.arange(EVERY - 1, n_obs, EVERY)
    hits = np.zeros(runs, dtype=bool)
    c1, c2 = np.cumsum(yc, axis=1)[:, idx], np.cumsum(yc * yc, axis=1)[:, idx]
    s1, s2 = np.cumsum(ys, axis=1)[:, idx], np.cumsum(ys * ys, axis=1)[:, idx]
    for col, i in enumerate(idx):
        n = np.full(runs, i + 1.0)
        c = np.stack([n, c1[:, col], c2[:, col]], axis=1)
        s = np.stack([n, s1[:, col], s2[:, col]], axis=1)
        d, v = mean_difference_vec(c, s, 0.02)
        ok = n >= 30
        hits |= ok & (normal_mixture_log_e_vec(d, v, margin, 0.2) >= math.log(1 / ALPHA))
    return float(hits.mean())


def test_log_latency_type_one_error_at_the_margin() -> None:
    margin = math.log(1.1)
    assert _ever_rejects_log_mean(margin, margin, 6) <= ALPHA


def test_log_latency_power_on_a_thirty_percent_slowdown() -> None:
    assert _ever_rejects_log_mean(math.log(1.3), math.log(1.1), 7) >= 0.95


def test_bernoulli_mixture_is_exact_under_the_null_and_has_power() -> None:
    rng = np.random.default_rng(8)
    p0, runs, n = 0.01, 500, 4000
    for p, want_low in ((p0, True), (0.005, True), (0.03, False)):
        k = np.cumsum(rng.random((runs, n)) < p, axis=1)[:, 4::5]
        nn = np.arange(5, n + 1, 5, dtype=float)
        hits = np.zeros(runs, dtype=bool)
        for col in range(nn.size):
            le = bernoulli_log_e_vec(k[:, col].astype(float), np.full(runs, nn[col]), p0)
            hits |= le >= math.log(1 / ALPHA)
        if want_low:
            assert hits.mean() <= ALPHA
        else:
            assert hits.mean() >= 0.95


def test_vectorised_forms_agree_with_the_scalar_ones() -> None:
    for k, n in ((0, 10), (3, 100), (40, 1000)):
        assert bernoulli_log_e_vec(np.array([k]), np.array([n]), 0.01)[0] == pytest.approx(
            bernoulli_log_e(k, n, 0.01)
        )
    for z in (-50.0, -31.0, -5.0, 0.0, 3.0):
        assert log_norm_cdf_vec(np.array([z]))[0] == pytest.approx(log_norm_cdf(z), rel=1e-3)
    c, s = Moments(200, 9, 10.0, 60.0), Moments(210, 2, 8.0, 50.0)
    d, v = rate_difference(c, s)
    dv, vv = rate_difference_vec(*(np.array([x]) for x in (200.0, 9.0, 210.0, 2.0)))
    assert (dv[0], vv[0]) == pytest.approx((d, v))
    d, v = mean_difference(c, s, 0.02)
    dv, vv = mean_difference_vec(
        np.array([[200.0, 10.0, 60.0]]), np.array([[210.0, 8.0, 50.0]]), 0.02
    )
    assert (dv[0], vv[0]) == pytest.approx((d, v))
    assert normal_mixture_log_e_vec(np.array([0.02]), np.array([1e-5]), 0.005, 0.02)[
        0
    ] == pytest.approx(normal_mixture_log_e(0.02, 1e-5, 0.005, 0.02))


def test_lower_bound_is_where_the_evidence_meets_the_bar() -> None:
    lower = normal_mixture_lower(0.03, 1e-5, 0.01, 0.02)
    assert 0.0 < lower < 0.03
    assert normal_mixture_log_e(0.03, 1e-5, lower, 0.02) == pytest.approx(math.log(100), abs=1e-3)


def test_no_data_is_no_evidence() -> None:
    assert normal_mixture_log_e(0.5, 0.0, 0.0, 0.02) == 0.0
    assert bernoulli_log_e(0, 0, 0.01) == 0.0
    # A spotless stable and one canary failure: the shrunk variance keeps this from counting.
    d, v = rate_difference(Moments(30, 1), Moments(30, 0))
    assert normal_mixture_log_e(d, v, 0.005, 0.02) < math.log(2)
