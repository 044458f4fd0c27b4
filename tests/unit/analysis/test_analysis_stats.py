"""The statistical primitives against brute force and known values."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from canary.analysis import stats


def brute_binom_sf(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1))


@pytest.mark.parametrize(
    ("k", "n", "p"), [(0, 10, 0.3), (3, 40, 0.01), (6, 100, 0.05), (40, 40, 0.9)]
)
def test_binom_sf_matches_brute_force(k: int, n: int, p: float) -> None:
    assert stats.binom_sf(k, n, p) == pytest.approx(brute_binom_sf(k, n, p), rel=1e-9, abs=1e-15)


def test_binom_sf_edges_and_large_n() -> None:
    assert stats.binom_sf(1, 10, 0.0) == 0.0
    assert stats.binom_sf(11, 10, 0.5) == 0.0
    assert stats.binom_sf(5, 10, 1.0) == 1.0
    assert 0.0 < stats.binom_sf(600, 50_000, 0.01) < 1.0


def test_clopper_pearson_lower_inverts_the_exact_test() -> None:
    lo = stats.clopper_pearson_lower(9, 50, 0.05)
    assert stats.binom_sf(9, 50, lo) == pytest.approx(0.05, abs=1e-6)
    assert stats.clopper_pearson_lower(0, 50, 0.05) == 0.0


def test_wilson_known_value() -> None:
    lo, hi = stats.wilson(0, 40, 1.959964)
    assert lo == 0.0
    assert hi == pytest.approx(0.0876, abs=1e-4)


def test_newcombe_p_value_agrees_with_its_bound() -> None:
    for k1, k2 in [(8, 0), (3, 1), (0, 0), (1, 4)]:
        p = stats.newcombe_p_value(k1, 50, k2, 50, 0.005)
        for alpha in (0.01, 0.05, 0.2):
            lower = stats.newcombe_bounds(k1, 50, k2, 50, stats.z_upper(alpha))[0]
            assert (p < alpha) == (lower > 0.005)


def test_mann_whitney_matches_pairwise_count() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(0.5, 1, 30), rng.normal(0, 1, 25)
    u = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(x, y))
    z = (u - 30 * 25 / 2 - 0.5) / math.sqrt(30 * 25 * 56 / 12)
    assert stats.mann_whitney_greater(x, y) == pytest.approx(stats.normal_sf(z), rel=1e-9)
    assert stats.mann_whitney_greater(y, x) > 0.5


def test_hodges_lehmann_recovers_a_shift() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.normal(1.0, 0.2, 200), rng.normal(0.0, 0.2, 200)
    est, lower = stats.hodges_lehmann_lower(x, y, 0.01)
    assert est == pytest.approx(1.0, abs=0.05)
    assert 0.9 < lower < est


def test_ewm_mean_std() -> None:
    mean, std = stats.ewm_mean_std([10.0, 10.0, 10.0], 0.3)
    assert (mean, std) == (10.0, 0.0)
    mean, std = stats.ewm_mean_std([0.0, 10.0], 0.5)
    assert 5.0 < mean < 10.0 and std > 0
    assert math.isnan(stats.ewm_mean_std([1.0], 0.3)[1])
