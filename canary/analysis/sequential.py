"""Anytime-valid sequential tests: mixture e-values and confidence sequences for canary vs stable.

Every function returns the logarithm of an e-value for a one-sided null. Under the null the
e-value is (asymptotically, for the normal mixtures; exactly, for the Bernoulli mixture) a
nonnegative supermartingale with mean at most one, so by Ville's inequality the chance that it
*ever* reaches 1/alpha, however often it is looked at, is at most alpha. That is what lets the
engine check every few seconds without inflating false alarms (Lindon et al., KDD 2022; Howard
et al. 2021; Waudby-Smith et al. 2021, "time-uniform central limit theory").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

_LOG2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def log_norm_cdf(z: float) -> float:
    """log Phi(z), accurate far into the lower tail (where Phi itself underflows)."""
    if z > -30.0:
        return math.log(max(0.5 * math.erfc(-z / math.sqrt(2.0)), 1e-300))
    # Mills-ratio asymptote: the exact value is below 1e-197 here anyway.
    return -0.5 * z * z - math.log(-z) - _HALF_LOG_2PI


def logsumexp(values: Sequence[float]) -> float:
    """log(sum(exp(v))) without overflow; -inf for no values."""
    if not values:
        return -math.inf
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(math.fsum(math.exp(v - top) for v in values))


def normal_mixture_log_e(estimate: float, variance: float, margin: float, tau: float) -> float:
    """log e-value for H0 "theta <= margin" from an estimate that is ~ N(theta, variance).

    A one-sided (half-normal, scale ``tau``) mixture over the alternative effect of the Gaussian
    likelihood ratio. With the running estimate of a mean or a difference of means, this is the
    asymptotic confidence sequence of Waudby-Smith et al.; ``tau`` is the effect size it is
    most sensitive to, and the boundary is only mildly worse elsewhere.
    """
    if not (variance > 0.0 and math.isfinite(variance) and math.isfinite(estimate)):
        return 0.0
    info = 1.0 / variance
    x = (estimate - margin) * info
    a = info + 1.0 / (tau * tau)
    z = x / math.sqrt(a)
    return _LOG2 + log_norm_cdf(z) - 0.5 * math.log1p(tau * tau * info) + x * x / (2.0 * a)


def normal_mixture_lower(estimate: float, variance: float, alpha: float, tau: float) -> float:
    """The (1 - alpha) anytime-valid lower confidence bound that matches normal_mixture_log_e.

    The smallest margin that the data cannot yet reject; used to put a number in the reasons.
    """
    if not (variance > 0.0 and math.isfinite(variance)):
        return -math.inf
    target = math.log(1.0 / alpha)
    sd = math.sqrt(variance)
    lo, hi = estimate - 50.0 * sd - 1.0, estimate
    if normal_mixture_log_e(estimate, variance, lo, tau) < target:
        return -math.inf
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if normal_mixture_log_e(estimate, variance, mid, tau) >= target:
            lo = mid
        else:
            hi = mid
    return lo


# Alternatives for the one-sample Bernoulli mixture, as multiples of the null rate: from "a bit
# worse" to "broken", equally weighted, so that small and large breaches are both found quickly.
_BERNOULLI_RATIOS = (1.5, 2.0, 3.0, 5.0, 10.0)


def bernoulli_log_e(k: int, n: int, p0: float) -> float:
    """log e-value for H0 "rate <= p0" after ``k`` events in ``n`` independent trials.

    A finite mixture of likelihood ratios against rates above ``p0``. Each ratio is a
    martingale under rate p0 and a supermartingale under any smaller rate, so the mixture is an
    exact e-process for the composite null: no normal approximation, valid at n = 1.
    """
    if n <= 0 or p0 <= 0.0:
        return 0.0 if n <= 0 else (math.inf if k > 0 else 0.0)
    if p0 >= 1.0:
        return 0.0
    terms = []
    for r in _BERNOULLI_RATIOS:
        p1 = min(p0 * r, 0.999)
        if p1 <= p0:
            continue
        terms.append(k * math.log(p1 / p0) + (n - k) * math.log((1.0 - p1) / (1.0 - p0)))
    if not terms:
        return 0.0
    return logsumexp(terms) - math.log(len(terms))


@dataclass(frozen=True)
class Moments:
    """Sufficient statistics of one stream: count, events (failures or exceedances), sums."""

    n: float = 0.0
    events: float = 0.0
    s1: float = 0.0
    s2: float = 0.0

    @property
    def rate(self) -> float:
        return self.events / self.n if self.n else math.nan

    @property
    def mean(self) -> float:
        return self.s1 / self.n if self.n else math.nan

    @property
    def var(self) -> float:
        """Unbiased sample variance of the summed values (0 below two values)."""
        if self.n < 2:
            return 0.0
        return max(0.0, (self.s2 - self.s1 * self.s1 / self.n) / (self.n - 1.0))


def rate_difference(canary: Moments, stable: Moments) -> tuple[float, float]:
    """(canary rate - stable rate, its variance) with rates shrunk towards 1/2 for the variance.

    The +1/+2 (Agresti-Caffo) shrinkage keeps the variance away from zero when no events were
    seen, so that one early failure of the canary against a spotless stable is not a "certain"
    regression — the failure mode of a plain Wald variance.
    """
    d = canary.rate - stable.rate
    pc = (canary.events + 1.0) / (canary.n + 2.0)
    ps = (stable.events + 1.0) / (stable.n + 2.0)
    return d, pc * (1.0 - pc) / canary.n + ps * (1.0 - ps) / stable.n


def mean_difference(canary: Moments, stable: Moments, floor_sd: float) -> tuple[float, float]:
    """(canary mean - stable mean, its variance); each sd floored at ``floor_sd``.

    The floor stops a few identical values (a cached response, a timeout at the same limit) from
    claiming infinite precision.
    """
    vc = max(canary.var, floor_sd * floor_sd)
    vs = max(stable.var, floor_sd * floor_sd)
    return canary.mean - stable.mean, vc / canary.n + vs / stable.n


# --- vectorised forms: one value per restart window, for the engine's interim checks --------------

_ERFC = np.frompyfunc(math.erfc, 1, 1)


def log_norm_cdf_vec(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """log Phi(z) elementwise (see log_norm_cdf)."""
    z = np.asarray(z, dtype=float)
    safe = np.maximum(z, -30.0)
    erfc = np.asarray(_ERFC(-safe / math.sqrt(2.0)), dtype=float)
    direct = np.log(np.maximum(0.5 * erfc, 1e-300))
    with np.errstate(divide="ignore", invalid="ignore"):
        tail = -0.5 * z * z - np.log(np.maximum(-z, 30.0)) - _HALF_LOG_2PI
    return np.where(z > -30.0, direct, tail)


def normal_mixture_log_e_vec(
    estimate: npt.NDArray[np.float64],
    variance: npt.NDArray[np.float64],
    margin: float,
    tau: float,
) -> npt.NDArray[np.float64]:
    """normal_mixture_log_e elementwise; 0 where the variance is not positive."""
    ok = (variance > 0.0) & np.isfinite(variance) & np.isfinite(estimate)
    var = np.where(ok, variance, 1.0)
    est = np.where(ok, estimate, margin)
    info = 1.0 / var
    x = (est - margin) * info
    a = info + 1.0 / (tau * tau)
    z = x / np.sqrt(a)
    out = _LOG2 + log_norm_cdf_vec(z) - 0.5 * np.log1p(tau * tau * info) + x * x / (2.0 * a)
    return np.where(ok, out, 0.0)


_RATIO_ARR = np.asarray(_BERNOULLI_RATIOS, dtype=float)


def bernoulli_log_e_vec(
    k: npt.NDArray[np.float64], n: npt.NDArray[np.float64], p0: float
) -> npt.NDArray[np.float64]:
    """bernoulli_log_e elementwise (0 where n is 0)."""
    if p0 <= 0.0 or p0 >= 1.0:
        return np.zeros_like(np.asarray(n, dtype=float))
    p1 = np.minimum(p0 * _RATIO_ARR, 0.999)
    p1 = p1[p1 > p0]
    if p1.size == 0:
        return np.zeros_like(np.asarray(n, dtype=float))
    up = np.log(p1 / p0)
    down = np.log((1.0 - p1) / (1.0 - p0))
    k = np.asarray(k, dtype=float)[:, None]
    n = np.asarray(n, dtype=float)[:, None]
    terms = k * up[None, :] + (n - k) * down[None, :]
    top = terms.max(axis=1, keepdims=True)
    out = top[:, 0] + np.log(np.exp(terms - top).sum(axis=1)) - math.log(p1.size)
    return np.where(n[:, 0] > 0, out, 0.0)


def rate_difference_vec(
    cn: npt.NDArray[np.float64],
    ck: npt.NDArray[np.float64],
    sn: npt.NDArray[np.float64],
    sk: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """rate_difference elementwise; callers mask out empty windows."""
    cn1, sn1 = np.maximum(cn, 1.0), np.maximum(sn, 1.0)
    pc = (ck + 1.0) / (cn + 2.0)
    ps = (sk + 1.0) / (sn + 2.0)
    return ck / cn1 - sk / sn1, pc * (1.0 - pc) / cn1 + ps * (1.0 - ps) / sn1


def mean_difference_vec(
    c: npt.NDArray[np.float64], s: npt.NDArray[np.float64], floor_sd: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """mean_difference elementwise from (n, s1, s2) columns of canary and stable windows."""

    def mv(x: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        n = np.maximum(x[:, 0], 1.0)
        mean = x[:, 1] / n
        var = np.where(
            x[:, 0] >= 2, (x[:, 2] - x[:, 1] * x[:, 1] / n) / np.maximum(n - 1.0, 1.0), 0.0
        )
        return mean, np.maximum(var, floor_sd * floor_sd) / n

    mc, vc = mv(c)
    ms, vs = mv(s)
    return mc - ms, vc + vs
