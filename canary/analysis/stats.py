"""Statistical primitives (binomial tails, Wilson/Newcombe bounds, bootstrap) on math and numpy."""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

_NORMAL = NormalDist()


def z_upper(alpha: float) -> float:
    """The standard normal quantile with ``alpha`` above it."""
    return _NORMAL.inv_cdf(1.0 - alpha)


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 1.0 - _NORMAL.cdf(z)


def binom_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), exact."""
    if k <= 0:
        return 1.0
    if k > n or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    # Sum upward from pmf(k) by the ratio recurrence; log space for the first term so that
    # n in the tens of thousands neither underflows nor overflows.
    log_pmf = (
        math.lgamma(n + 1)
        - math.lgamma(k + 1)
        - math.lgamma(n - k + 1)
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
    )
    term = math.exp(log_pmf)
    total = term
    odds = p / (1.0 - p)
    for j in range(k, n):
        term *= (n - j) / (j + 1) * odds
        total += term
        if j > n * p and term < total * 1e-16:
            break
    return min(1.0, total)


def clopper_pearson_lower(k: int, n: int, alpha: float) -> float:
    """One-sided exact lower confidence bound (level 1 - alpha) for a binomial proportion."""
    if k <= 0 or n <= 0:
        return 0.0
    lo, hi = 0.0, k / n
    # binom_sf(k, n, p) rises with p; the bound is the p where it reaches alpha.
    for _ in range(60):
        mid = (lo + hi) / 2
        if binom_sf(k, n, mid) < alpha:
            lo = mid
        else:
            hi = mid
    return lo


def wilson(k: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval (lower, upper) for k of n at normal quantile z (two-sided z)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_bounds(k1: int, n1: int, k2: int, n2: int, z: float) -> tuple[float, float]:
    """Newcombe's hybrid score interval (method 10) for p1 - p2 at normal quantile z."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, z)
    l2, u2 = wilson(k2, n2, z)
    d = p1 - p2
    lower = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    upper = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return lower, upper


def newcombe_p_value(k1: int, n1: int, k2: int, n2: int, margin: float) -> float:
    """One-sided p-value for H0: p1 - p2 <= margin, by inverting Newcombe's interval.

    It is the level at which the lower bound just reaches ``margin``, so that ``p < alpha``
    exactly when the (1 - alpha) lower bound exceeds the margin.
    """
    d = k1 / n1 - k2 / n2
    if d == margin:
        return 0.5
    if d > margin:

        def clears(z: float) -> bool:
            return newcombe_bounds(k1, n1, k2, n2, z)[0] > margin

        return normal_sf(_largest_z(clears))

    # Below the margin the mirrored statement is about the upper bound: p = 1 - p(upper).
    def below(z: float) -> bool:
        return newcombe_bounds(k1, n1, k2, n2, z)[1] < margin

    return 1.0 - normal_sf(_largest_z(below))


def _largest_z(holds: Callable[[float], bool]) -> float:
    """The largest z in [0, 40] for which a condition monotone in z still holds."""
    lo, hi = 0.0, 40.0
    if holds(hi):
        return hi
    for _ in range(60):
        mid = (lo + hi) / 2
        if holds(mid):
            lo = mid
        else:
            hi = mid
    return lo


def percentile(values: npt.ArrayLike, q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation; nan for no values."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return math.nan
    return float(np.percentile(arr, q))


def bootstrap_ratio(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    q: float,
    *,
    n_boot: int,
    seed: int,
) -> npt.NDArray[np.float64]:
    """Bootstrap replicates of percentile_q(a) / percentile_q(b), resampling each independently."""
    xa = np.asarray(a, dtype=float)
    xb = np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    qa = np.percentile(xa[rng.integers(0, xa.size, size=(n_boot, xa.size))], q, axis=1)
    qb = np.percentile(xb[rng.integers(0, xb.size, size=(n_boot, xb.size))], q, axis=1)
    # A zero-latency denominator can only come from broken input; inf keeps it "worse".
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(qb > 0, qa / np.where(qb > 0, qb, 1.0), np.inf)
    return np.asarray(ratio, dtype=np.float64)


def ewm_mean_std(values: npt.ArrayLike, alpha: float) -> tuple[float, float]:
    """Exponentially weighted mean and (reliability-weighted, unbiased) standard deviation."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return math.nan, math.nan
    w = (1.0 - alpha) ** np.arange(x.size - 1, -1, -1, dtype=float)
    v1 = float(w.sum())
    mean = float((w * x).sum() / v1)
    if x.size < 2:
        return mean, math.nan
    v2 = float((w * w).sum())
    var = float((w * (x - mean) ** 2).sum()) / (v1 - v2 / v1)
    return mean, math.sqrt(max(var, 0.0))


def rankdata(a: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Ranks 1..n with ties given their average rank."""
    x = np.asarray(a, dtype=float)
    sorter = np.argsort(x, kind="mergesort")
    inv = np.empty(sorter.size, dtype=np.intp)
    inv[sorter] = np.arange(sorter.size)
    xs = x[sorter]
    first = np.r_[True, xs[1:] != xs[:-1]]
    dense = first.cumsum()[inv]
    edges = np.r_[np.nonzero(first)[0], x.size]
    return np.asarray(0.5 * (edges[dense] + edges[dense - 1] + 1), dtype=np.float64)


def mann_whitney_greater(x: npt.ArrayLike, y: npt.ArrayLike, shift: float = 0.0) -> float:
    """One-sided Mann-Whitney p-value for H0 "x - shift is not stochastically larger than y".

    Normal approximation with tie and continuity corrections; fine from about 10 per group.
    """
    xa = np.asarray(x, dtype=float) - shift
    ya = np.asarray(y, dtype=float)
    n1, n2 = xa.size, ya.size
    if n1 == 0 or n2 == 0:
        return 1.0
    ranks = rankdata(np.r_[xa, ya])
    u = float(ranks[:n1].sum()) - n1 * (n1 + 1) / 2
    n = n1 + n2
    _, counts = np.unique(np.r_[xa, ya], return_counts=True)
    ties = float((counts**3 - counts).sum())
    var = n1 * n2 / 12.0 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0:
        return 0.5
    return normal_sf((u - n1 * n2 / 2.0 - 0.5) / math.sqrt(var))


def hodges_lehmann_lower(
    x: npt.ArrayLike, y: npt.ArrayLike, alpha: float, *, max_n: int = 2000
) -> tuple[float, float]:
    """Hodges-Lehmann shift estimate of x - y and its one-sided (1 - alpha) lower bound.

    Both come from the sorted pairwise differences, so they agree with the Mann-Whitney test.
    Groups above ``max_n`` are thinned evenly (in sorted order) to bound the n1 * n2 memory.
    """
    xa = np.sort(np.asarray(x, dtype=float))
    ya = np.sort(np.asarray(y, dtype=float))
    if xa.size > max_n:
        xa = xa[np.linspace(0, xa.size - 1, max_n).astype(int)]
    if ya.size > max_n:
        ya = ya[np.linspace(0, ya.size - 1, max_n).astype(int)]
    n1, n2 = xa.size, ya.size
    if n1 == 0 or n2 == 0:
        return math.nan, math.nan
    d = np.sort((xa[:, None] - ya[None, :]).ravel())
    estimate = float(np.median(d))
    k = math.floor(n1 * n2 / 2.0 - z_upper(alpha) * math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12.0))
    return estimate, float(d[max(k, 0)]) if k >= 0 else -math.inf
