"""Synthetic recordings with a known truth (healthy or bad canaries) for scripts/bench-judge."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from canary.analysis.slo import SLO
from canary.probing.result import TransactionResult
from canary.replay import Recording, RolloutModel

# Median latency (ms) and base error rate of each synthetic transaction.
TXNS = {"browse": (80.0, 0.003), "checkout": (250.0, 0.003), "search": (150.0, 0.003)}
SIGMA = 0.35  # log-latency spread: p95 = 1.78 x median
P95_FACTOR = math.exp(1.6449 * SIGMA)
LATENCY_SLO_MS = 800.0  # checkout's p95 is ~445 ms: the objective leaves 80% headroom
DURATION_S = 1500.0
HISTORY_S = 3600.0

Mult = Callable[[np.ndarray], np.ndarray]


@dataclass
class Effect:
    """How one version of one transaction departs from its base behaviour over time."""

    latency: Mult | None = None  # multiplier of latency
    errors: Mult | None = None  # added error probability


@dataclass
class Truth:
    kind: str
    bad: bool
    onset_t: float | None = None  # when the canary became worse than tolerated
    breach_t: float | None = None  # when its true p95 crosses the latency objective (drifts)
    drift: str | None = None  # "latency" or "errors" for the drift scenarios


@dataclass
class Spec:
    """Everything the generator needs to draw one recording."""

    txns: list[str]
    rate: float = 2.0  # runs per second per transaction and version
    sigma: float = SIGMA
    base_error: float | None = None
    season: bool = False
    common: dict[str, Effect] = field(default_factory=dict)  # hits both versions
    canary: dict[str, Effect] = field(default_factory=dict)
    stable: dict[str, Effect] = field(default_factory=dict)  # stable only (its own wander)
    latency_slo_ms: float = LATENCY_SLO_MS


def _const(x: float) -> Mult:
    return lambda t: np.full_like(t, x)


def _step(at: float, x: float, base: float) -> Mult:
    return lambda t: np.where(t >= at, x, base)


def _ramp(at: float, per_s: float, base: float) -> Mult:
    return lambda t: base + per_s * np.clip(t - at, 0.0, None)


def _window(start: float, end: float, x: float, base: float) -> Mult:
    return lambda t: np.where((t >= start) & (t < end), x, base)


def _path(values: np.ndarray, step_s: float) -> Mult:
    """A precomputed multiplier path on a grid of ``step_s`` seconds, read by interpolation."""
    grid = np.arange(values.size) * step_s
    return lambda t: np.interp(t, grid, values)


def _wander(rng: np.random.Generator, sd: float, tau_s: float) -> Mult:
    """Slow log-latency wander: an Ornstein-Uhlenbeck path (stationary sd ``sd``, correlation
    time ``tau_s``) over the history and the rollout, as noisy neighbours, GC and caches give."""
    step = 1.0
    n = int((HISTORY_S + DURATION_S) / step) + 2
    phi = math.exp(-step / tau_s)
    shocks = rng.standard_normal(n) * sd * math.sqrt(1.0 - phi * phi)
    x = np.empty(n)
    x[0] = sd * rng.standard_normal()
    for i in range(1, n):
        x[i] = phi * x[i - 1] + shocks[i]
    grid = np.arange(n) * step - HISTORY_S
    return lambda t: np.exp(np.interp(t, grid, x))


def _schedule_weight(t: np.ndarray, lead_s: float = 0.0) -> np.ndarray:
    """The nominal schedule's weight (5% a minute from 5%, after ``lead_s`` at weight 0): what
    a canary carries if it is not held. Recordings are open-loop, so a held canary is drawn as
    if it had moved on (harder)."""
    w = np.minimum(100.0, 5.0 + 5.0 * np.floor(np.maximum(t - lead_s, 0.0) / 60.0))
    return np.where(t < lead_s, 0.0, w)


def _bursts(first: float, every: float, length: float, x: float) -> Mult:
    return lambda t: np.where((t >= first) & (((t - first) % every) < length), x, 0.0)


_OLD_HEALTHY = (
    "identical",
    "noisy",
    "low-volume",
    "seasonal",
    "infra-shift",
    "slightly-worse",
    "better",
    "tight-slo",
    "within-tolerance",
)
# Classes added for the held-out findings (issue 13); drawn after the older ones (_SEED_ORDER).
_NEW_HEALTHY = ("wander", "warm-up", "shared-errors", "infra-step", "many-txns", "very-low-volume")
_NEW_BAD = ("warm-up-then-slow", "one-bad-of-12", "saturation", "leak", "wander-latency-step")
HEALTHY: tuple[str, ...] = (*_OLD_HEALTHY, *_NEW_HEALTHY)
BAD = (
    "error-step",
    "latency-step",
    "latency-drift",
    "latency-drift-near-slo",
    "error-drift",
    "error-bursts",
    "one-broken-txn",
    "late-onset",
    *_NEW_BAD,
)
KINDS = HEALTHY + BAD
_NEW = _NEW_HEALTHY + _NEW_BAD
# Seeds are drawn per (seed, position here): new scenarios go last so old recordings stay put.
_SEED_ORDER = (
    *(k for k in KINDS if k not in ("tight-slo", "within-tolerance", *_NEW)),
    "tight-slo",
    "within-tolerance",
    *_NEW,
)
# Extra transactions for the many-transaction scenarios: (median ms, base error rate).
_MANY = {f"t{i:02d}": (60.0 + 17.0 * i, 0.003) for i in range(30)}


def _warmup(rng: np.random.Generator) -> tuple[Effect, float]:
    """A new version's transient: up to about twice as slow, decaying over tens of seconds,
    plus a short blip of errors while caches, JIT and connection pools fill."""
    amp = float(rng.uniform(0.6, 1.1))
    tau = float(rng.uniform(6.0, 15.0))
    blip_s = float(rng.uniform(5.0, 15.0))
    blip = float(rng.uniform(0.05, 0.2))
    return Effect(
        latency=lambda t: 1.0 + amp * np.exp(-np.maximum(t, 0.0) / tau),
        errors=_window(0.0, blip_s, blip, 0.0),
    ), tau


Warmup = Callable[[np.random.Generator], tuple[Effect, float]]
Wander = Callable[[np.random.Generator, float, float], Mult]


@dataclass(frozen=True)
class Families:
    """Where scenario() takes its transients from: the default generator's own, or another
    generator's (canary/bench/alt.py), so that both draw the same classes with the same truth.
    ``lead_s`` is a weight-0 isolated phase before the first step, which shifts the schedule."""

    warmup: Warmup = _warmup
    wander: Wander = _wander
    lead_s: float = 0.0


DEFAULT_FAMILIES = Families()


def scenario(
    kind: str, rng: np.random.Generator, fam: Families = DEFAULT_FAMILIES
) -> tuple[Spec, Truth]:
    """The spec and the truth of one draw of scenario ``kind`` (transients from ``fam``)."""
    all3 = list(TXNS)
    pick = str(rng.choice(all3))
    if kind == "identical":
        return Spec(all3), Truth(kind, False)
    if kind == "noisy":
        return Spec(all3, sigma=0.6, base_error=0.006), Truth(kind, False)
    if kind == "low-volume":
        return Spec(all3, rate=0.3), Truth(kind, False)
    if kind == "seasonal":
        return Spec(all3, season=True), Truth(kind, False)
    if kind == "infra-shift":
        at = float(rng.uniform(100, 900))
        eff = Effect(latency=_window(at, at + 120, 1.8, 1.0), errors=_window(at, at + 120, 0.05, 0))
        return Spec(all3, common={x: eff for x in all3}), Truth(kind, False)
    if kind == "slightly-worse":
        eff = Effect(latency=_const(1.04), errors=_const(0.0015))
        return Spec(all3, canary={x: eff for x in all3}), Truth(kind, False)
    if kind == "tight-slo":
        # Slightly worse again, under the near-SLO drift's objective (20% above checkout's p95):
        # a forecast that trusts a noisy trend would roll this one back.
        eff = Effect(latency=_const(1.04), errors=_const(0.0015))
        slo_ms = 1.2 * TXNS["checkout"][0] * P95_FACTOR
        return Spec(all3, canary={x: eff for x in all3}, latency_slo_ms=slo_ms), Truth(kind, False)
    if kind == "within-tolerance":
        # Worse than stable by most of the tolerance, but steadily: a trend screen must not
        # mistake its noise for a drift.
        eff = Effect(latency=_const(1.07), errors=_const(0.003))
        return Spec(all3, canary={x: eff for x in all3}), Truth(kind, False)
    if kind == "better":
        eff = Effect(latency=_const(0.85), errors=_const(-0.0015))
        return Spec(all3, canary={x: eff for x in all3}), Truth(kind, False)
    if kind == "error-step":
        eff = Effect(errors=_const(float(rng.uniform(0.02, 0.05))))
        return Spec(all3, canary={x: eff for x in all3}), Truth(kind, True, 0.0)
    if kind == "latency-step":
        eff = Effect(latency=_const(float(rng.uniform(1.25, 1.6))))
        return Spec(all3, canary={x: eff for x in all3}), Truth(kind, True, 0.0)
    if kind == "latency-drift":
        # Checkout's p95 climbs from ~445 ms to the 800 ms objective in 5 to 10 minutes.
        onset = float(rng.uniform(0, 300))
        to_breach = float(rng.uniform(300, 600))
        need = LATENCY_SLO_MS / (TXNS["checkout"][0] * P95_FACTOR)
        per_s = (need - 1.0) / to_breach
        eff = Effect(latency=_ramp(onset, per_s, 1.0))
        # The regression passes the 10% tolerance this long after the onset.
        tol_t = onset + 0.10 / per_s
        return Spec(all3, canary={x: eff for x in all3}), Truth(
            kind, True, tol_t, onset + to_breach, "latency"
        )
    if kind == "latency-drift-near-slo":
        # The objective sits just 20% above checkout's p95 and only checkout drifts: the breach
        # comes soon after the tolerance is passed, so only a forecast can beat it.
        slo_ms = 1.2 * TXNS["checkout"][0] * P95_FACTOR
        onset = float(rng.uniform(0, 300))
        to_breach = float(rng.uniform(300, 600))
        per_s = 0.2 / to_breach
        eff = Effect(latency=_ramp(onset, per_s, 1.0))
        return Spec(all3, canary={"checkout": eff}, latency_slo_ms=slo_ms), Truth(
            kind, True, onset + 0.10 / per_s, onset + to_breach, "latency"
        )
    if kind == "error-drift":
        onset = float(rng.uniform(0, 300))
        per_s = float(rng.uniform(2, 6)) / 100.0 / 600.0  # 2 to 6 pp more after 10 minutes
        eff = Effect(errors=_ramp(onset, per_s, 0.0))
        tol_t = onset + 0.005 / per_s
        breach = onset + (0.01 - TXNS["checkout"][1]) / per_s
        return Spec(all3, canary={x: eff for x in all3}), Truth(kind, True, tol_t, breach, "errors")
    if kind == "error-bursts":
        first = float(rng.uniform(0, 120))
        eff = Effect(errors=_bursts(first, 90.0, 15.0, float(rng.uniform(0.2, 0.4))))
        return Spec(all3, canary={x: eff for x in all3}), Truth(kind, True, first)
    if kind == "one-broken-txn":
        if rng.random() < 0.5:
            eff = Effect(errors=_const(float(rng.uniform(0.03, 0.1))))
        else:
            eff = Effect(latency=_const(float(rng.uniform(1.3, 2.0))))
        return Spec(all3, canary={pick: eff}), Truth(kind, True, 0.0)
    if kind == "late-onset":
        at = float(rng.uniform(400, 700))
        if rng.random() < 0.5:
            eff = Effect(errors=_step(at, float(rng.uniform(0.02, 0.05)), 0.0))
        else:
            eff = Effect(latency=_step(at, float(rng.uniform(1.25, 1.6)), 1.0))
        return Spec(all3, canary={x: eff for x in all3}), Truth(kind, True, at)
    if kind in ("wander", "wander-latency-step"):
        # Each version wanders by itself: 3-6% (sd) over 1-5 minutes, shared by its transactions.
        sd, tau = float(rng.uniform(0.03, 0.06)), float(rng.uniform(60.0, 300.0))
        wc, ws = fam.wander(rng, sd, tau), fam.wander(rng, sd, tau)
        if kind == "wander":
            return Spec(
                all3,
                canary={x: Effect(latency=wc) for x in all3},
                stable={x: Effect(latency=ws) for x in all3},
            ), Truth(kind, False)
        x0 = float(rng.uniform(1.25, 1.6))
        step = Effect(latency=lambda t: wc(t) * x0)
        return Spec(
            all3, canary={x: step for x in all3}, stable={x: Effect(latency=ws) for x in all3}
        ), Truth(kind, True, 0.0)
    if kind == "warm-up":
        eff, _ = fam.warmup(rng)
        return Spec(all3, canary={x: eff for x in all3}), Truth(kind, False)
    if kind == "warm-up-then-slow":
        warm, _ = fam.warmup(rng)
        x0 = float(rng.uniform(1.25, 1.6))
        assert warm.latency is not None
        lat = warm.latency
        eff = Effect(latency=lambda t: lat(t) * x0, errors=warm.errors)
        return Spec(all3, canary={x: eff for x in all3}), Truth(kind, True, 0.0)
    if kind == "shared-errors":
        # An incident of errors (and some slowness) on both versions: not the canary's doing.
        at = float(rng.uniform(100, 900))
        length = float(rng.uniform(30, 120))
        eff = Effect(
            latency=_window(at, at + length, 1.3, 1.0),
            errors=_window(at, at + length, float(rng.uniform(0.1, 0.3)), 0.0),
        )
        return Spec(all3, common={x: eff for x in all3}), Truth(kind, False)
    if kind == "infra-step":
        # The infrastructure under both versions gets slower for good, part-way through.
        at = float(rng.uniform(100, 900))
        eff = Effect(latency=_step(at, float(rng.uniform(1.2, 1.6)), 1.0))
        return Spec(all3, common={x: eff for x in all3}), Truth(kind, False)
    if kind == "many-txns":
        n = int(rng.integers(10, 31))
        return Spec(list(_MANY)[:n]), Truth(kind, False)
    if kind == "one-bad-of-12":
        txns = list(_MANY)[:12]
        bad = str(rng.choice(txns))
        if rng.random() < 0.5:
            eff = Effect(errors=_const(float(rng.uniform(0.03, 0.08))))
        else:
            eff = Effect(latency=_const(float(rng.uniform(1.3, 1.8))))
        return Spec(txns, canary={bad: eff}), Truth(kind, True, 0.0)
    if kind == "very-low-volume":
        return Spec(all3, rate=float(rng.uniform(0.2, 0.4))), Truth(kind, False)
    if kind == "saturation":
        # Latency grows with the canary's share of traffic: fine at 5%, checkout's p95 reaches
        # the objective somewhere between 40% and 70%.
        w_breach = float(rng.uniform(40.0, 70.0))
        need = LATENCY_SLO_MS / (TXNS["checkout"][0] * P95_FACTOR) - 1.0
        a = need / (w_breach / 100.0) ** 2
        lead = fam.lead_s
        eff = Effect(latency=lambda t: 1.0 + a * (_schedule_weight(t, lead) / 100.0) ** 2)
        w_tol = 100.0 * math.sqrt(0.10 / a)
        return Spec(all3, canary={x: eff for x in all3}), Truth(
            kind, True, lead + _weight_time(w_tol), lead + _weight_time(w_breach), "latency"
        )
    if kind == "leak":
        # Latency grows exponentially from the onset (a leak): doubling every 3-8 minutes.
        onset = float(rng.uniform(0, 300))
        rate = math.log(2.0) / float(rng.uniform(180.0, 480.0))
        eff = Effect(latency=lambda t: np.exp(rate * np.maximum(t - onset, 0.0)))
        need = LATENCY_SLO_MS / (TXNS["checkout"][0] * P95_FACTOR)
        return Spec(all3, canary={x: eff for x in all3}), Truth(
            kind, True, onset + math.log(1.1) / rate, onset + math.log(need) / rate, "latency"
        )
    raise ValueError(f"unknown scenario {kind!r}; known: {', '.join(KINDS)}")


def _weight_time(w: float) -> float:
    """When the nominal schedule first carries weight ``w``."""
    return 60.0 * max(0.0, math.ceil((w - 5.0) / 5.0))


def _season(t: np.ndarray) -> np.ndarray:
    # A daily-traffic-like swing compressed to a 20-minute period so that a rollout sees it.
    return 1.0 + 0.25 * np.sin(2.0 * np.pi * t / 1200.0)


def _draw(
    spec: Spec,
    txn: str,
    version: str,
    t_lo: float,
    t_hi: float,
    rate: float,
    rng: np.random.Generator,
) -> list[TransactionResult]:
    median, err = TXNS.get(txn) or _MANY[txn]
    if spec.base_error is not None:
        err = spec.base_error
    n = max(0, int((t_hi - t_lo) * rate))
    # Probes are scheduled: one per slot, at a random instant within it.
    t = t_lo + (np.arange(n) + rng.random(n)) / rate
    mult = np.ones(n)
    p_err = np.full(n, err)
    if spec.season:
        mult *= _season(t)
        p_err = p_err * _season(t)
    own = spec.canary if version == "canary" else spec.stable
    for eff in (spec.common.get(txn), own.get(txn)):
        if eff is None:
            continue
        if eff.latency is not None:
            mult = mult * eff.latency(t)
        if eff.errors is not None:
            p_err = p_err + eff.errors(t)
    lat = median * mult * np.exp(spec.sigma * rng.standard_normal(n))
    ok = rng.random(n) >= np.clip(p_err, 0.0, 1.0)
    status = np.where(ok, 200, 500)
    return [
        TransactionResult(float(a), version, txn, bool(b), float(c), int(d))
        for a, b, c, d in zip(t, ok, lat, status, strict=True)
    ]


def generate(kind: str, seed: int) -> tuple[Recording, Truth]:
    """One recording of scenario ``kind``; the same (kind, seed) always gives the same data."""
    if kind not in KINDS:
        raise ValueError(f"unknown scenario {kind!r}; known: {', '.join(KINDS)}")
    rng = np.random.default_rng([seed, _SEED_ORDER.index(kind)])
    spec, truth = scenario(kind, rng)
    obs: list[TransactionResult] = []
    history: list[TransactionResult] = []
    for txn in spec.txns:
        history += _draw(spec, txn, "stable", -HISTORY_S, 0.0, 0.2, rng)
        for version in ("stable", "canary"):
            obs += _draw(spec, txn, version, 0.0, DURATION_S, spec.rate, rng)
    return build(kind, seed, spec, truth, obs, history)


def build(
    kind: str,
    seed: int,
    spec: Spec,
    truth: Truth,
    obs: list[TransactionResult],
    history: list[TransactionResult],
    steps: list[int] | None = None,
    tag: str = "synthetic",
) -> tuple[Recording, Truth]:
    """The recording of one draw: the bench's schedule (5% a minute, or ``steps``) and SLO."""
    obs.sort(key=lambda r: r.t)
    history.sort(key=lambda r: r.t)
    slo = {
        "success_threshold": 99.0,
        "error_budget": 50,
        "latency_p95_ms": round(spec.latency_slo_ms, 1),
        "max_latency_increase_pct": 10.0,
        "max_error_rate_increase_pp": 0.5,
    }
    rec = Recording(
        name=f"{kind}-{seed}",
        description=f"{tag}: " + ("bad" if truth.bad else "healthy") + f" canary ({kind})",
        rollout=RolloutModel(
            initial_weight=steps[0] if steps else 5,
            step_weight=5,
            max_weight=100,
            step_interval_s=60,
            steps=steps,
        ),
        slo=SLO.from_dict(slo),
        transactions=list(spec.txns),
        history=history,
        observations=obs,
        end_t=DURATION_S,
        slo_raw=slo,
    )
    return rec, truth
