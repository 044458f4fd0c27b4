"""When a forecast may roll back, and its reasons: objectives and the latency tolerance against
time, and latency against the canary's weight (saturation)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from canary.analysis.ledger import VERSIONS, Bucket, Ledger
from canary.analysis.reasons import fmt_pct
from canary.analysis.tests import ALL, Wander, divergence

_NORMAL = NormalDist()


@dataclass(frozen=True)
class Prediction:
    """A forecast breach: the operator's sentence and the numbers behind it."""

    reason: str
    metrics: dict[str, Any]


def trend_bar(z: float, scopes: int) -> float:
    """The trend z a screen needs when it looks at ``scopes`` series at once: ``z`` is the bar
    for one, and the chance of any of them passing by noise stays that of one (Bonferroni)."""
    if scopes <= 1:
        return z
    return _NORMAL.inv_cdf(1.0 - (1.0 - _NORMAL.cdf(z)) / scopes)


def predict(ledger: Ledger, wander: Wander, closed: int, weight: int) -> Prediction | None:
    """A forecast breach of an absolute objective, of the latency tolerance, or of either at the
    next weight; checked once per closed bucket."""
    s = ledger.settings
    h = max(1, math.ceil(s.forecast_horizon_s / s.forecast_bucket_s))
    for txn in ledger.transactions:
        found = _metric(ledger, wander, txn, closed, h, "p95")
        if found is None:
            found = _metric(ledger, wander, txn, closed, h, "errors")
        if found is not None:
            return found
    if s.forecast_weight:
        pooled = [ALL] if len(ledger.transactions) >= 2 else []
        names = [*pooled, *ledger.transactions]
        bar = trend_bar(s.tolerance_trend_z, len(names))
        for scope in names:
            found = _against_weight(ledger, wander, scope, weight, bar)
            if found is not None:
                return found
    if s.forecast_tolerance and s.tolerance_horizon_s > 0:
        ht = max(1, math.ceil(s.tolerance_horizon_s / s.forecast_bucket_s))
        cols = _ratio_columns(ledger, closed)
        scopes = [(ALL, list(cols.values()))] if len(cols) >= 2 else []
        scopes += [(txn, [col]) for txn, col in cols.items()]
        bar = trend_bar(s.tolerance_trend_z, len(scopes))
        for scope, part in scopes:
            values, variances = _pool(part)
            drift = wander.get(ledger, scope, "latency")
            found = _tolerance(ledger, scope, values, variances, ht, bar, drift)
            if found is not None:
                return found
    return None


def series(buckets: list[Bucket], last: int, window: int, metric: str) -> list[float | None]:
    """One value per bucket index in (last - window, last]; None where too few runs.

    ``metric``: "p95" (ms), "logmean" (mean log latency), "count" (successful runs) or
    "errors" (percent).
    """
    by_idx = {b.idx: b for b in buckets}
    out: list[float | None] = []
    for i in range(last - window + 1, last + 1):
        b = by_idx.get(i)
        if b is None or b.n < 5:
            out.append(None)
        elif metric == "errors":
            out.append(100.0 * b.fails / b.n)
        elif b.ok < 5:
            out.append(None)
        elif metric == "p95":
            out.append(b.current_p95())
        elif metric == "logmean":
            out.append(b.logmean)
        else:
            out.append(float(b.ok))
    return out


def _pool(cols: list[list[tuple[float, float] | None]]) -> tuple[list[float], list[float]]:
    """The mean of several transactions' bucket values and its variance, over the buckets that
    all of them have."""
    k = float(len(cols))
    values, variances = [], []
    for row in zip(*cols, strict=True):
        present = [r for r in row if r is not None]
        if len(present) == len(row):
            values.append(sum(r[0] for r in present) / k)
            variances.append(sum(r[1] for r in present) / (k * k))
    return values, variances


def _ratio_columns(ledger: Ledger, closed: int) -> dict[str, list[tuple[float, float] | None]]:
    """Per transaction and bucket up to ``closed``: canary-minus-stable mean log latency and its
    sampling variance (each series' overall log-latency spread over the bucket's runs); None
    where a bucket has too few runs. The wander is not in it: it is no noise independent from
    one bucket to the next, and the trend screen allows for it as a whole (``_tolerance``)."""
    s = ledger.settings
    w = s.forecast_window
    floor = s.latency_floor_sd**2
    out: dict[str, list[tuple[float, float] | None]] = {}
    for txn in ledger.transactions:
        parts = []
        for v in VERSIONS:
            key = f"{txn}|{v}"
            b = ledger.buckets.get(key, [])
            parts.append(
                (
                    series(b, closed, w, "logmean"),
                    series(b, closed, w, "count"),
                    max(ledger.latency(key, 0).var, floor),
                )
            )
        (cm, cn, cv), (sm, sn, sv) = parts
        out[txn] = [
            None
            if a is None or b is None or na is None or nb is None
            else (a - b, cv / na + sv / nb)
            for a, na, b, nb in zip(cm, cn, sm, sn, strict=True)
        ]
    return out


def _tolerance(
    ledger: Ledger,
    scope: str,
    values: list[float],
    variances: list[float],
    h: int,
    bar: float,
    drift: float = 0.0,
) -> Prediction | None:
    """A forecast passing of the latency tolerance by ``scope``'s canary/stable ratio, whose
    trend must reach the z ``bar``: its rise over the window set against the buckets' noise and
    against what the wander (variance ``drift`` of the difference) can do by itself."""
    s, slo = ledger.settings, ledger.slo
    if len(values) < s.forecast_min_buckets:
        return None
    target = math.log1p(slo.max_latency_increase_pct / 100.0)
    from canary.analysis.forecast import forecast_breach, weighted_trend

    # The screen: a rise of the ratio that the buckets' own noise cannot explain (z >= 4.5 is
    # a one-sided chance of 3e-6 per look), steep enough for a straight line to reach the
    # tolerance well within the horizon. A canary worse than stable but steady, however close
    # to the tolerance, has no such trend.
    slope, z, last_fit = weighted_trend(values, variances)
    if slope <= 0 or z < bar:
        return None
    # Wander moves both versions slowly and by itself: between two moments its difference
    # changes by at most sqrt(2) times its sd (the two ends independent), however smooth the
    # rise looks from bucket to bucket. The rise over the window must clear that as well.
    rise = slope * (len(values) - 1)
    z = rise / math.sqrt((rise / z) ** 2 + 2.0 * drift)
    if z < bar:
        return None
    if last_fit + 1.5 * h * slope < target:
        return None
    fc = forecast_breach(values, target, h)
    if fc.probability < s.predictive_probability:
        return None
    within = (fc.steps_to_cross or h) * s.forecast_bucket_s
    per_min = slope * 60.0 / s.forecast_bucket_s
    tol = f"{slo.max_latency_increase_pct:g}%"
    rising = f"rising {100 * math.expm1(per_min):.1f}%/min (trend z={z:.1f})"
    if last_fit >= target:
        reason = (
            f"{scope}: canary latency about {fmt_pct(last_fit)} over stable, past the {tol} "
            f"tolerance, and {rising}; forecast to stay past it (p={fc.probability:.2f})"
        )
    else:
        reason = (
            f"{scope}: canary latency forecast to pass the {tol} tolerance over stable "
            f"within {within:.0f} s (p={fc.probability:.2f}); now about "
            f"{fmt_pct(last_fit)} and {rising}"
        )
    return Prediction(
        reason,
        {
            "transaction": scope,
            "metric": "latency_vs_stable",
            "threshold": target,
            "probability": fc.probability,
            "within_s": within,
            "trend_z": z,
            "mean": fc.mean,
            "sd": fc.sd,
        },
    )


def _stable_p95(ledger: Ledger, txn: str, stable_logmeans: list[float]) -> float | None:
    """Stable's p95 now: the reference p95 (hundreds of runs) moved by how far stable's typical
    latency has moved since, far steadier than the p95 of a few 15-second buckets."""
    ref = ledger.reference.get(txn, {})
    if "logmean" in ref and stable_logmeans:
        recent = stable_logmeans[-16:]
        return float(ref["p95"] * math.exp(float(np.mean(recent)) - ref["logmean"]))
    return None


def _metric(
    ledger: Ledger, wander: Wander, txn: str, closed: int, h: int, metric: str
) -> Prediction | None:
    s, slo = ledger.settings, ledger.slo
    if metric == "p95":
        if slo.latency_p95_ms is None:
            return None
        threshold = slo.latency_p95_ms
    else:
        threshold = 100.0 - slo.success_threshold
        if threshold <= 0:
            return None
    kc, ks = f"{txn}|canary", f"{txn}|stable"
    w = s.forecast_window
    if metric == "p95":
        # A bucket's p95 from a few dozen runs is too noisy to trend. The canary's p95 is
        # modelled as stable's p95 times the canary/stable latency ratio, whose log (a
        # difference of mean log latencies) is several times less noisy.
        cm = series(ledger.buckets.get(kc, []), closed, w, "logmean")
        sm = series(ledger.buckets.get(ks, []), closed, w, "logmean")
        sp = series(ledger.buckets.get(ks, []), closed, w, "p95")
        rows = [
            (c, b, p)
            for c, b, p in zip(cm, sm, sp, strict=True)
            if c is not None and b is not None and p is not None
        ]
        if len(rows) < s.forecast_min_buckets:
            return None
        values = [c - b for c, b, _ in rows]
        stable_p95 = _stable_p95(ledger, txn, [b for _, b, _ in rows])
        if stable_p95 is None:
            stable_p95 = float(np.median([p for _, _, p in rows[-16:]]))
        if stable_p95 <= 0 or stable_p95 >= threshold:
            return None
        target = math.log(threshold / stable_p95)
        stable_level = [p for _, _, p in rows]
    else:
        canary = series(ledger.buckets.get(kc, []), closed, w, metric)
        stable = series(ledger.buckets.get(ks, []), closed, w, metric)
        pairs = [
            (c, b) for c, b in zip(canary, stable, strict=True) if c is not None and b is not None
        ]
        if len(pairs) < s.forecast_min_buckets:
            return None
        values = [c for c, _ in pairs]
        target = threshold
        stable_level = [b for _, b in pairs]
    from canary.analysis.forecast import forecast_breach, trend

    # The trend must be real: the series rising significantly, the canary significantly
    # worse than stable (which rules out load that slows both), stable not heading for the
    # objective itself, and the straight line reaching the objective within the horizon.
    lvl = trend(values)
    if lvl.slope <= 0 or lvl.t_stat < s.trend_t:
        return None
    if lvl.last_fit + 1.5 * h * lvl.slope < target:
        return None
    base = trend(stable_level)
    if base.last_fit + h * max(base.slope, 0.0) >= threshold:
        return None
    div = divergence(ledger, wander, txn, metric)
    if div < math.log(max(1, 4 * len(ledger.transactions)) / s.alpha):
        return None
    fc = forecast_breach(values, target, h)
    if fc.probability < s.predictive_probability:
        return None
    within = (fc.steps_to_cross or h) * s.forecast_bucket_s
    per_min = lvl.slope * 60.0 / s.forecast_bucket_s
    if metric == "p95" and stable_p95 is not None:
        now_ms = stable_p95 * math.exp(lvl.last_fit)
        reason = (
            f"{txn} p95 forecast to exceed {threshold:.0f} ms within {within:.0f} s "
            f"(p={fc.probability:.2f}); canary p95 now about {now_ms:.0f} ms "
            f"({fmt_pct(lvl.last_fit)} over stable's {stable_p95:.0f} ms) and rising "
            f"{100 * math.expm1(per_min):.1f}%/min (trend t={lvl.t_stat:.1f}) while stable "
            f"is not"
        )
    else:
        reason = (
            f"{txn} error rate forecast to exceed {threshold:.2g}% within {within:.0f} s "
            f"(p={fc.probability:.2f}); canary errors now {lvl.last_fit:.2f}% and rising "
            f"{per_min:.2f} pp/min (trend t={lvl.t_stat:.1f}) while stable is not"
        )
    return Prediction(
        reason,
        {
            "transaction": txn,
            "metric": metric,
            "threshold": threshold,
            "probability": fc.probability,
            "within_s": within,
            "trend_t": lvl.t_stat,
            "divergence_log_e": div,
            "mean": fc.mean,
            "sd": fc.sd,
        },
    )


def _weight_rows(
    ledger: Ledger, wander: Wander, txn: str
) -> dict[int, tuple[float, float, float, float]]:
    """Per bucket index: (weight, canary-minus-stable mean log latency, its variance, stable's
    mean log latency), where both versions have 5 successful runs."""
    s = ledger.settings
    kc, ks = f"{txn}|canary", f"{txn}|stable"
    stable_by_idx = {b.idx: b for b in ledger.buckets.get(ks, [])}
    floor = s.latency_floor_sd**2
    cv = max(ledger.latency(kc, 0).var, floor)
    sv = max(ledger.latency(ks, 0).var, floor)
    extra = wander.get(ledger, txn, "latency")
    out = {}
    for b in ledger.buckets.get(kc, []):
        o = stable_by_idx.get(b.idx)
        if b.weight is None or o is None or b.ok < 5 or o.ok < 5:
            continue
        bl, ol = b.logmean, o.logmean
        assert bl is not None and ol is not None
        out[b.idx] = (float(b.weight), bl - ol, cv / b.ok + sv / o.ok + extra, ol)
    return out


def _against_weight(
    ledger: Ledger, wander: Wander, scope: str, weight: int, bar: float
) -> Prediction | None:
    """Latency that grows with the canary's share of traffic (saturation), forecast at the next
    weight: "at 45% the canary's p95 is forecast to reach 830 ms"."""
    s, slo = ledger.settings, ledger.slo
    txns = ledger.transactions if scope == ALL else [scope]
    parts = [_weight_rows(ledger, wander, t) for t in txns]
    common = sorted(set.intersection(*(set(p) for p in parts))) if parts else []
    k = float(len(parts))
    xs = [parts[0][i][0] for i in common]
    ts = [float(i) for i in common]
    ys = [sum(p[i][1] for p in parts) / k for i in common]
    vs = [sum(p[i][2] for p in parts) / (k * k) for i in common]
    sl = [parts[0][i][3] for i in common]
    txn = scope
    levels = sorted(set(xs))
    if len(xs) < s.forecast_min_buckets or len(levels) < 3 or levels[-1] - levels[0] < 10:
        return None
    step = levels[-1] - levels[-2]
    now = max(float(weight), levels[-1])
    nxt = min(100.0, now + step)
    if nxt <= now:
        return None
    from canary.analysis.forecast import fit_against

    fit = fit_against(xs, ys, vs, nxt)
    if fit is None or fit.slope <= 0 or fit.z < bar:
        return None
    # The weight must explain the series better than time does: a canary that saturates jumps
    # when its weight does and is flat while it is held; a leak grows within a step as much as
    # across steps, and is the time forecast's.
    by_time = fit_against(ts, ys, vs, max(ts))
    if by_time is not None and by_time.chi2 <= fit.chi2:
        return None
    targets: list[tuple[str, float, float | None]] = [
        ("tolerance", math.log1p(slo.max_latency_increase_pct / 100.0), None)
    ]
    stable_p95 = None if scope == ALL else _stable_p95(ledger, txn, sl)
    if slo.latency_p95_ms is not None and stable_p95 and stable_p95 < slo.latency_p95_ms:
        targets.insert(0, ("objective", math.log(slo.latency_p95_ms / stable_p95), stable_p95))
    for kind, target, p95 in targets:
        if fit.predicted < target:
            continue
        p = 1.0 - _NORMAL.cdf((target - fit.predicted) / max(fit.predicted_sd, 1e-9))
        if p < s.predictive_probability:
            continue
        per10 = fmt_pct(10.0 * fit.slope)
        if p95 is not None:
            reason = (
                f"{txn}: at {nxt:.0f}% the canary's p95 is forecast to reach "
                f"{p95 * math.exp(fit.predicted):.0f} ms, past the {slo.latency_p95_ms:.0f} ms "
                f"objective (p={p:.2f}); its latency grows with its share of traffic, "
                f"{per10} over stable per 10 points of weight (z={fit.z:.1f})"
            )
        else:
            reason = (
                f"{txn}: at {nxt:.0f}% the canary's latency is forecast to be "
                f"{fmt_pct(fit.predicted)} over stable, past the "
                f"{slo.max_latency_increase_pct:g}% tolerance (p={p:.2f}); it grows with its "
                f"share of traffic, {per10} per 10 points of weight (z={fit.z:.1f})"
            )
        return Prediction(
            reason,
            {
                "transaction": txn,
                "metric": "latency_vs_weight",
                "target": kind,
                "threshold": target,
                "probability": p,
                "at_weight": nxt,
                "predicted": fit.predicted,
                "predicted_sd": fit.predicted_sd,
                "slope_per_point": fit.slope,
                "z": fit.z,
            },
        )
    return None
