"""Predictive rollback: forecast a per-interval metric with AutoETS and the odds of an SLO breach.

The only module that imports statsforecast, and only inside ``forecast_breach``: the import
costs about three seconds, which the CLI and the tests that never forecast should not pay.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

_NORMAL = NormalDist()
# The prediction-interval level asked of the model; its half-width gives the forecast sd.
_LEVEL = 80
_Z_LEVEL = _NORMAL.inv_cdf(0.5 + _LEVEL / 200.0)


@dataclass(frozen=True)
class Trend:
    """Least-squares slope of a series per interval, its t statistic and the fitted last value."""

    slope: float
    t_stat: float
    last_fit: float


@dataclass(frozen=True)
class Forecast:
    """The chance that a metric crosses ``threshold`` within ``horizon`` intervals."""

    probability: float
    steps_to_cross: int | None  # first interval whose forecast mean is above the threshold
    mean: list[float]
    sd: list[float]


def trend(values: Sequence[float]) -> Trend:
    """OLS trend of ``values`` against their index; t = 0 for fewer than four finite values."""
    y = np.asarray(values, dtype=float)
    x = np.arange(y.size, dtype=float)
    keep = np.isfinite(y)
    x, y = x[keep], y[keep]
    if y.size < 4:
        return Trend(0.0, 0.0, float(y[-1]) if y.size else math.nan)
    xc = x - x.mean()
    sxx = float((xc * xc).sum())
    slope = float((xc * (y - y.mean())).sum() / sxx)
    resid = y - (y.mean() + slope * xc)
    s2 = float((resid * resid).sum()) / (y.size - 2)
    se = math.sqrt(s2 / sxx) if s2 > 0 else 0.0
    # A perfectly straight line has no residual: its trend is as certain as it gets.
    t = slope / se if se > 0.0 else math.copysign(math.inf, slope) if slope else 0.0
    return Trend(slope, t, float(y.mean() + slope * xc[-1]))


def weighted_trend(
    values: Sequence[float], variances: Sequence[float]
) -> tuple[float, float, float]:
    """Weighted least-squares slope per interval: (slope, z, fitted last), the z no larger than
    the variances given allow, and smaller when the residuals say the buckets are noisier or
    correlated."""
    y = np.asarray(values, dtype=float)
    w = 1.0 / np.asarray(variances, dtype=float)
    x = np.arange(y.size, dtype=float)
    xm = float((w * x).sum() / w.sum())
    ym = float((w * y).sum() / w.sum())
    sxx = float((w * (x - xm) ** 2).sum())
    if y.size < 3 or sxx <= 0:
        return 0.0, 0.0, float(y[-1]) if y.size else math.nan
    slope = float((w * (x - xm) * (y - ym)).sum() / sxx)
    z = slope * math.sqrt(sxx) / math.sqrt(_inflation((y - ym - slope * (x - xm)) * np.sqrt(w)))
    return slope, z, ym + slope * (x[-1] - xm)


def _inflation(resid: np.ndarray) -> float:
    """How much noisier than their given variances a fit's standardized residuals (in time
    order) say the points are: at least 1.

    The variances come from each bucket's run count, as if runs were independent. Runs that
    come in correlated bursts, heavy tails and slow wander make buckets noisier than that,
    and neighbouring buckets alike: the factor is the residuals' own spread (quasi-likelihood)
    times the effective-sample-size correction of their lag-1 correlation. It never lowers a
    variance, so a fit is never more confident than the run counts allow.
    """
    n = resid.size
    if n < 6:
        return 1.0
    ss = float((resid**2).sum())
    dispersion = max(1.0, ss / (n - 2))
    rho = float((resid[1:] * resid[:-1]).sum() / max(ss, 1e-300))
    rho = min(rho, 0.9)
    return dispersion * ((1.0 + rho) / (1.0 - rho) if rho > 0 else 1.0)


def forecast_breach(values: Sequence[float], threshold: float, horizon: int) -> Forecast:
    """Fit AutoETS to ``values`` (oldest first) and return P(some step in horizon > threshold).

    The probability is the largest per-step exceedance probability of the forecast's normal
    predictive distribution: a lower bound on the chance of crossing at some step, which keeps
    the rule conservative.
    """
    from statsforecast.models import AutoETS

    y = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    h = max(1, int(horizon))
    out: dict[str, Any] = AutoETS(season_length=1).forecast(y=y, h=h, level=[_LEVEL])
    mean = np.asarray(out["mean"], dtype=float)
    hi = np.asarray(out[f"hi-{_LEVEL}"], dtype=float)
    sd = np.maximum((hi - mean) / _Z_LEVEL, 1e-9)
    probs = [1.0 - _NORMAL.cdf((threshold - m) / s) for m, s in zip(mean, sd, strict=True)]
    above = [i + 1 for i, m in enumerate(mean) if m > threshold]
    return Forecast(
        probability=float(max(probs)),
        steps_to_cross=above[0] if above else None,
        mean=[float(m) for m in mean],
        sd=[float(s) for s in sd],
    )


@dataclass(frozen=True)
class Fit:
    """Weighted least squares of a series against a regressor (the canary's weight)."""

    slope: float
    z: float  # slope / its standard error, with the variances taken as known
    predicted: float  # the fitted value at the regressor asked for
    predicted_sd: float
    chi2: float  # weighted residual sum of squares: how well the regressor explains the series


def fit_against(
    x: Sequence[float], values: Sequence[float], variances: Sequence[float], at: float
) -> Fit | None:
    """WLS of ``values`` on ``x`` (in time order) with ``variances``, evaluated at ``at``, its z
    and sd widened as ``_inflation`` says; None when x does not vary."""
    xs = np.asarray(x, dtype=float)
    y = np.asarray(values, dtype=float)
    w = 1.0 / np.asarray(variances, dtype=float)
    if y.size < 3:
        return None
    xm = float((w * xs).sum() / w.sum())
    ym = float((w * y).sum() / w.sum())
    sxx = float((w * (xs - xm) ** 2).sum())
    if sxx <= 0:
        return None
    slope = float((w * (xs - xm) * (y - ym)).sum() / sxx)
    pred = ym + slope * (at - xm)
    resid = (y - ym - slope * (xs - xm)) * np.sqrt(w)
    chi2 = float((resid**2).sum())
    k = _inflation(resid)
    sd = math.sqrt(k * (1.0 / float(w.sum()) + (at - xm) ** 2 / sxx))
    return Fit(slope, slope * math.sqrt(sxx / k), pred, sd, chi2)
