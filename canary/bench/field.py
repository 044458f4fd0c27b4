"""`--noise field`: a third synthetic generator, a shop behind a load balancer probed by a fleet."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from canary.bench import field_noise as fn
from canary.bench.scenarios import KINDS, Spec, Truth, build
from canary.probing.result import TransactionResult
from canary.replay import Recording, RolloutModel

# Seed tag of this generator: its streams are disjoint from the default's ([seed, kind]) and
# alt's, whatever --seeds and --seed-offset.
TAG = 0x13F1E7D
DURATION_S = fn.END_S
HISTORY_RATE = 0.2  # stable's history is kept thinner than the rollout's probing
LEAD_S = 60.0  # the weight-0 isolated phase, in the draws that have one
Mult = fn.Mult


@dataclass(frozen=True)
class Txn:
    """One transaction: its steps' names and median server times, and its failures."""

    steps: tuple[str, ...]
    median_ms: np.ndarray
    sigma: float  # log spread of each step
    miss_p: float  # a step misses its cache this often
    miss_x: float  # and is then this much slower
    fail: float  # base failure probability of a run


# The shop's three transactions: step names and median server time of each (ms).
SHOP: dict[str, tuple[tuple[str, float], ...]] = {
    "browse": (("home", 30.0), ("product", 38.0)),
    "search": (("query", 95.0), ("results", 35.0)),
    "checkout": (("cart", 45.0), ("address", 60.0), ("pay", 85.0), ("confirm", 35.0)),
}


@dataclass
class World:
    """Everything that is the same for every run of one recording."""

    txns: dict[str, Txn]
    rate: float  # runs per second per transaction and version
    fleet: fn.Fleet
    hosts: dict[str, fn.Backends]
    wander: dict[str, fn.Path]  # each version's own
    shared: fn.Path  # the infrastructure under both
    rho0: float  # utilisation of the shop (queueing)
    season_amp: float
    season_period_s: float
    season_phase: float
    windows: list[fn.Window] = field(default_factory=list)
    lead_s: float = 0.0
    blip: float = 0.0  # failure share of a cold canary host at t = 0
    blip_tau_s: float = 5.0

    def load(self, t: np.ndarray) -> np.ndarray:
        """Queueing delay of the shared load over its mean: (1 - rho0) / (1 - rho(t))."""
        rho = self.rho0 * (
            1.0
            + self.season_amp * np.sin(2 * math.pi * t / self.season_period_s + self.season_phase)
        )
        return (1.0 - self.rho0) / (1.0 - np.minimum(rho, 0.95))


@dataclass
class Effects:
    """How the canary (or the infrastructure under both) departs from the world's noise."""

    latency: dict[str, Mult] = field(default_factory=dict)  # canary, multiplier of server time
    errors: dict[str, Mult] = field(default_factory=dict)  # canary, added failure probability
    common: Mult | None = None  # both versions, multiplier of server time


@dataclass(frozen=True)
class Knobs:
    """What a class changes in the world before it is drawn."""

    names: tuple[str, ...] = tuple(SHOP)
    rate: tuple[float, float] = (1.0, 2.0)
    noisy: float = 1.0
    wander_sd: tuple[float, float] = (0.01, 0.025)
    wander_s: tuple[float, float] = (60.0, 240.0)
    season: tuple[float, float] = (0.03, 0.12)
    warm: tuple[float, float] = (0.0, 0.35)  # cold-start extra latency (mild by default)
    blip: tuple[float, float] = (0.0, 0.0)
    incident: float = 0.2  # chance of one short shared incident in the draw


def _many(rng: np.random.Generator, n: int) -> tuple[str, ...]:
    return tuple(f"tx{i:02d}" for i in range(n))


def knobs(kind: str, rng: np.random.Generator) -> Knobs:
    if kind == "noisy":
        return Knobs(noisy=float(rng.uniform(1.5, 2.0)))
    if kind == "low-volume":
        return Knobs(rate=(0.4, 0.7))
    if kind == "very-low-volume":
        return Knobs(rate=(0.2, 0.4))
    if kind == "seasonal":
        return Knobs(season=(0.25, 0.4))
    if kind in ("wander", "wander-latency-step"):
        return Knobs(wander_sd=(0.03, 0.06), wander_s=(60.0, 300.0))
    if kind in ("warm-up", "warm-up-then-slow"):
        return Knobs(warm=(0.6, 1.1), blip=(0.03, 0.12))
    if kind == "many-txns":
        return Knobs(names=_many(rng, int(rng.integers(10, 31))), rate=(0.3, 0.6))
    if kind == "one-bad-of-12":
        return Knobs(names=_many(rng, 12), rate=(0.5, 0.9))
    return Knobs()


def _txn(rng: np.random.Generator, name: str, noisy: float) -> Txn:
    if name in SHOP:
        steps = tuple(s for s, _ in SHOP[name])
        med = np.array([m for _, m in SHOP[name]]) * rng.uniform(0.85, 1.15)
    else:
        k = int(rng.integers(1, 4))
        steps = tuple(f"{name}-{i + 1}" for i in range(k))
        med = rng.uniform(20.0, 110.0, k)
    return Txn(
        steps=steps,
        median_ms=med,
        sigma=float(rng.uniform(0.2, 0.35)) * math.sqrt(noisy),
        miss_p=float(rng.uniform(0.04, 0.12)) * noisy,
        miss_x=float(rng.uniform(2.0, 3.5)),
        fail=float(rng.uniform(0.001, 0.004)) * noisy,
    )


def world(kind: str, rng: np.random.Generator) -> World:
    k = knobs(kind, rng)
    txns = {n: _txn(rng, n, k.noisy) for n in k.names}
    wander_sd, wander_s = rng.uniform(*k.wander_sd), rng.uniform(*k.wander_s)
    warm_amp, warm_tau = float(rng.uniform(*k.warm)), float(rng.uniform(8.0, 30.0))
    hosts = {
        "stable": fn.backends(rng, int(rng.integers(3, 7)), rng.uniform(0.03, 0.08), 0.0, 1.0),
        "canary": fn.backends(
            rng, int(rng.integers(2, 5)), rng.uniform(0.03, 0.08), warm_amp, warm_tau
        ),
    }
    w = World(
        txns=txns,
        rate=float(rng.uniform(*k.rate)),
        fleet=fn.fleet(rng, k.noisy),
        hosts=hosts,
        wander={v: fn.smooth_path(rng, wander_sd, wander_s) for v in ("stable", "canary")},
        shared=fn.smooth_path(rng, rng.uniform(0.015, 0.04), rng.uniform(120.0, 360.0)),
        rho0=float(rng.uniform(0.3, 0.5)),
        season_amp=float(rng.uniform(*k.season)),
        season_period_s=float(rng.uniform(1200.0, 7200.0)),
        season_phase=float(rng.uniform(0.0, 2 * math.pi)),
        lead_s=LEAD_S if rng.random() < 1 / 3 else 0.0,
        blip=float(rng.uniform(*k.blip)),
        blip_tau_s=float(rng.uniform(3.0, 10.0)),
    )
    if rng.random() < k.incident:
        w.windows.append(_incident(rng, w, short=True))
    return w


def _incident(rng: np.random.Generator, w: World, short: bool = False) -> fn.Window:
    start = float(rng.uniform(30.0, DURATION_S - 120.0))
    if not short and rng.random() < 0.3:
        host = int(rng.integers(w.fleet.size))
        return fn.Window(start, start + float(rng.uniform(5, 40)), 1.0, 1.0, host, "dns")
    length = float(rng.uniform(5, 20) if short else rng.uniform(10, 60))
    fail = float(rng.uniform(0.05, 0.2) if short else rng.uniform(0.1, 0.5))
    cause = "db" if rng.random() < 0.6 else "lb"
    return fn.Window(start, start + length, fail, float(rng.uniform(1.2, 2.0)), None, cause)


# --- the true p95 of a transaction under a multiplier of its server time ----------------------


def _samples(
    rng: np.random.Generator, w: World, tx: Txn, n: int = 8_000
) -> tuple[np.ndarray, np.ndarray]:
    """Server and network parts of ``n`` runs with no wander, incident or effect."""
    h = w.hosts["stable"]
    server = _server(rng, tx, n) * np.exp(rng.choice(h.level, n))
    ph = rng.integers(0, w.fleet.size, n)
    net = w.fleet.rtt_ms[ph] * len(tx.steps) + fn.retransmits_ms(rng, w.fleet.loss[ph])
    return server, net


def _p95(server: np.ndarray, net: np.ndarray, m: float) -> float:
    return float(np.quantile(server * m + net, 0.95))


def _solve(f: Callable[[float], float], target: float, lo: float = 0.2, hi: float = 20.0) -> float:
    """The multiplier at which the increasing ``f`` reaches ``target`` (bisection)."""
    for _ in range(28):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) < target else (lo, mid)
    return (lo + hi) / 2


class Bars:
    """One transaction's base p95, and the server multipliers at which its p95 is 10% over
    stable's (the tolerance) or reaches an objective."""

    def __init__(self, rng: np.random.Generator, w: World, tx: Txn) -> None:
        self.server, self.net = _samples(rng, w, tx)
        self.p95 = _p95(self.server, self.net, 1.0)

    @functools.cached_property
    def tol(self) -> float:
        return _solve(self._at, 1.10 * self.p95)

    def _at(self, m: float) -> float:
        return _p95(self.server, self.net, m)

    def breach(self, slo_ms: float) -> float:
        return _solve(self._at, slo_ms)


# --- the scenario classes ---------------------------------------------------------------------


def _const(x: float) -> Mult:
    return lambda t: np.full_like(t, x)


def _from(at: float, x: float, base: float) -> Mult:
    return lambda t: np.where(t >= at, x, base)


def _ramp(at: float, per_s: float) -> Mult:
    return lambda t: per_s * np.maximum(t - at, 0.0)


def schedule_weight(t: np.ndarray, lead_s: float) -> np.ndarray:
    """The nominal weight at ``t`` (5% a minute from 5%, after ``lead_s`` at 0): recordings are
    open-loop, so a held canary is drawn as if it had moved on."""
    w = np.minimum(100.0, 5.0 + 5.0 * np.floor(np.maximum(t - lead_s, 0.0) / 60.0))
    return np.where(t < lead_s, 0.0, w)


def weight_time(w: float, lead_s: float) -> float:
    """When the nominal schedule first carries at least ``w``."""
    return lead_s + 60.0 * max(0.0, math.ceil((w - 5.0) / 5.0 - 1e-9))


def scenario(kind: str, rng: np.random.Generator, w: World) -> tuple[Effects, Truth, float]:
    """The class's effects, its truth and the latency objective (ms)."""
    names = list(w.txns)
    base = {n: Bars(rng, w, tx) for n, tx in w.txns.items()}
    slo = float(round(1.8 * max(b.p95 for b in base.values()), -1))
    every = names

    def tol() -> float:  # the server multiplier past the tolerance, on every transaction
        return min(b.tol for b in base.values())

    def breach() -> float:  # the one at which the first transaction reaches the objective
        return min(b.breach(slo) for b in base.values())

    healthy = Truth(kind, False)
    if kind in ("identical", "noisy", "low-volume", "very-low-volume", "seasonal", "wander"):
        return Effects(), healthy, slo
    if kind in ("warm-up", "many-txns"):
        return Effects(), healthy, slo
    if kind == "slightly-worse":
        x, e = rng.uniform(1.02, 1.05), rng.uniform(0.0005, 0.0015)
        return Effects({n: _const(x) for n in every}, {n: _const(e) for n in every}), healthy, slo
    if kind == "better":
        x = rng.uniform(0.85, 0.95)
        return Effects({n: _const(x) for n in every}), healthy, slo
    if kind == "tight-slo":
        slo = float(round(1.2 * max(x.p95 for x in base.values()), -1))
        x = rng.uniform(1.01, 1.04)
        return Effects({n: _const(x) for n in every}), healthy, slo
    if kind == "within-tolerance":
        x, e = rng.uniform(1.05, 1.07), rng.uniform(0.002, 0.003)
        return Effects({n: _const(x) for n in every}, {n: _const(e) for n in every}), healthy, slo
    if kind == "infra-shift":
        at, span = rng.uniform(200, 800), rng.uniform(180, 600)
        x = rng.uniform(0.15, 0.4)
        common = _shift(at, span, x)
        return Effects(common=common), healthy, slo
    if kind == "infra-step":
        at, x = rng.uniform(200, 900), rng.uniform(1.2, 1.5)
        back = at + rng.uniform(120, 400) if rng.random() < 0.5 else math.inf
        return Effects(common=lambda t: np.where((t >= at) & (t < back), x, 1.0)), healthy, slo
    if kind == "shared-errors":
        for _ in range(int(rng.integers(1, 4))):
            w.windows.append(_incident(rng, w))
        return Effects(), healthy, slo
    if kind == "error-step":
        e = rng.uniform(0.01, 0.02)
        return Effects(errors={n: _const(e) for n in every}), Truth(kind, True, 0.0), slo
    if kind in ("latency-step", "wander-latency-step"):
        x = rng.uniform(1.25, 1.5) if kind == "latency-step" else rng.uniform(1.25, 1.45)
        return Effects({n: _const(x) for n in every}), Truth(kind, True, 0.0), slo
    if kind == "warm-up-then-slow":
        x = rng.uniform(1.25, 1.4)
        return Effects({n: _const(x) for n in every}), Truth(kind, True, 0.0), slo
    if kind == "latency-drift":
        s0, to_breach = rng.uniform(0, 300), rng.uniform(300, 700)
        g = (breach() - 1.0) / to_breach
        eff = Effects({n: _lin(s0, g) for n in every})
        return eff, Truth(kind, True, s0 + (tol() - 1) / g, s0 + to_breach, "latency"), slo
    if kind == "latency-drift-near-slo":
        worst = max(names, key=lambda n: base[n].p95)
        slo = float(round(1.2 * base[worst].p95, -1))
        s0, to_breach = rng.uniform(0, 300), rng.uniform(300, 700)
        g = (base[worst].breach(slo) - 1.0) / to_breach
        truth = Truth(kind, True, s0 + (base[worst].tol - 1) / g, s0 + to_breach, "latency")
        return Effects({worst: _lin(s0, g)}), truth, slo
    if kind == "error-drift":
        s0, to_tol = rng.uniform(0, 240), rng.uniform(150, 450)
        g = 0.005 / to_tol
        top = max(x.fail for x in w.txns.values())
        truth = Truth(kind, True, s0 + to_tol, s0 + (0.01 - top) / g, "errors")
        return Effects(errors={n: _ramp(s0, g) for n in every}), truth, slo
    if kind == "error-bursts":
        first, gap = rng.uniform(30, 200), rng.uniform(60, 240)
        length, e = rng.uniform(10, 40), rng.uniform(0.15, 0.5)
        bursts = lambda t: np.where((t >= first) & ((t - first) % gap < length), e, 0.0)  # noqa: E731
        return Effects(errors={n: bursts for n in every}), Truth(kind, True, first), slo
    if kind in ("one-broken-txn", "one-bad-of-12"):
        pick = names[int(rng.integers(len(names)))]
        if kind == "one-broken-txn":
            eff = (
                Effects(errors={pick: _const(rng.uniform(0.03, 0.15))})
                if rng.random() < 0.6
                else Effects({pick: _const(rng.uniform(1.5, 2.0))})
            )
        else:
            eff = (
                Effects(errors={pick: _const(rng.uniform(0.015, 0.03))})
                if rng.random() < 0.5
                else Effects({pick: _const(rng.uniform(1.25, 1.5))})
            )
        return eff, Truth(kind, True, 0.0), slo
    if kind == "late-onset":
        at = rng.uniform(300, 900)
        if rng.random() < 0.5:
            eff = Effects(errors={n: _from(at, rng.uniform(0.015, 0.04), 0.0) for n in every})
        else:
            eff = Effects({n: _from(at, rng.uniform(1.25, 1.6), 1.0) for n in every})
        return eff, Truth(kind, True, at), slo
    if kind == "saturation":
        return _saturation(rng, w, kind, tol(), breach(), slo)
    if kind == "leak":
        double_s, at_breach = rng.uniform(120, 360), rng.uniform(500, 1100)
        c = (breach() - 1.0) / (2.0 ** (at_breach / double_s) - 1.0)
        leak = lambda t: 1.0 + c * (np.exp2(np.maximum(t, 0.0) / double_s) - 1.0)  # noqa: E731
        onset = double_s * math.log2(1.0 + (tol() - 1.0) / c)
        return (
            Effects({n: leak for n in every}),
            Truth(kind, True, onset, at_breach, "latency"),
            slo,
        )
    raise ValueError(f"unknown scenario {kind!r}; known: {', '.join(KINDS)}")


def _lin(s0: float, g: float) -> Mult:
    return lambda t: 1.0 + g * np.maximum(t - s0, 0.0)


def _shift(at: float, span: float, x: float) -> Mult:
    """A smooth rise of ``x`` under both versions over ``span`` seconds from ``at``."""
    return lambda t: 1.0 + x * np.clip((t - at) / span, 0.0, 1.0)


def _saturation(
    rng: np.random.Generator, w: World, kind: str, tol: float, breach: float, slo: float
) -> tuple[Effects, Truth, float]:
    """A canary with fixed capacity and a pool of workers: requests queue once all of them are
    busy, which grows like u^p / (1 - u) with u its share of traffic over what it can carry
    (an Erlang-C-like wait): no visible cost at 5%, a steep rise near capacity."""
    w_breach = float(rng.uniform(40.0, 70.0))
    w_cap = w_breach * float(rng.uniform(1.15, 1.6))
    p = float(rng.uniform(2.0, 4.0))

    def at_weight(weight: np.ndarray) -> np.ndarray:
        u = np.minimum(weight / w_cap, 0.95)
        return np.asarray(u**p / (1.0 - u))

    c = (breach - 1.0) / float(at_weight(np.array(w_breach)))
    w_tol = _solve(lambda x: 1.0 + c * float(at_weight(np.array(x))), tol, 0.0, w_breach)
    lead = w.lead_s

    def sat(t: np.ndarray) -> np.ndarray:
        return 1.0 + c * at_weight(schedule_weight(t, lead))

    truth = Truth(kind, True, weight_time(w_tol, lead), weight_time(w_breach, lead), "latency")
    return Effects({n: sat for n in w.txns}), truth, slo


# --- drawing the runs -------------------------------------------------------------------------


def _server(rng: np.random.Generator, tx: Txn, n: int) -> np.ndarray:
    k = len(tx.steps)
    step = tx.median_ms * np.exp(tx.sigma * rng.standard_normal((n, k)))
    step = np.where(rng.random((n, k)) < tx.miss_p, step * tx.miss_x, step)
    return np.asarray(step.sum(axis=1))


def _runs(
    rng: np.random.Generator,
    w: World,
    eff: Effects,
    name: str,
    version: str,
    t: np.ndarray,
    probe: np.ndarray,
    shared_u: np.ndarray,
) -> list[TransactionResult]:
    """One version's runs of one transaction at the fleet's instants ``t`` (already jittered)."""
    tx, hosts = w.txns[name], w.hosts[version]
    n = len(t)
    host = rng.integers(0, len(hosts.level), n)  # the balancer's pick
    mult = np.exp(hosts.log_mult(host, t) + w.wander[version](t) + w.shared(t)) * w.load(t)
    if eff.common is not None:
        mult *= eff.common(t)
    cold = np.zeros(n, dtype=bool)
    if version == "canary":
        mult *= hosts.warm(host, t)
        if name in eff.latency:
            mult *= eff.latency[name](t)
        cold = rng.random(n) < w.blip * np.exp(-np.maximum(t, 0.0) / w.blip_tau_s)
    server = _server(rng, tx, n) * mult
    for win in w.windows:
        on = win.active(t, probe)
        server = np.where(on, server * win.slow, server)
    server += hosts.paused_ms(host, t, server)
    net = w.fleet.rtt_ms[probe] * len(tx.steps) * (1.0 + 0.3 * rng.random(n))
    latency = server + net + fn.retransmits_ms(rng, w.fleet.loss[probe])

    regression = np.zeros(n, dtype=bool)
    if version == "canary" and name in eff.errors:
        extra = eff.errors[name](t)
        u = rng.random(n)
        regression = u < extra
        base_fail = (u >= extra) & (u < extra + tx.fail)
    else:
        base_fail = rng.random(n) < tx.fail
    # Incidents fail the paired runs of both versions together: the same root cause (and the
    # same uniform draw) at the same instant.
    incident: list[fn.Window | None] = [None] * n
    for win in w.windows:
        hit = win.active(t, probe) & (shared_u < win.fail)
        for i in np.flatnonzero(hit):
            incident[i] = win
    failed_causes = _causes(regression, base_fail, cold, incident)
    timeouts = latency >= fn.TIMEOUT_MS
    return _results(rng, w, name, version, t, latency, failed_causes, timeouts)


def _causes(
    regression: np.ndarray,
    base: np.ndarray,
    cold: np.ndarray,
    incident: list[fn.Window | None],
) -> list[str | None]:
    out: list[str | None] = []
    for i in range(len(base)):
        win = incident[i]
        if win is not None:
            out.append(win.cause)
        elif cold[i]:
            out.append("cold")
        elif regression[i]:
            out.append("regression")
        elif base[i]:
            out.append("base")
        else:
            out.append(None)
    return out


def _results(
    rng: np.random.Generator,
    w: World,
    name: str,
    version: str,
    t: np.ndarray,
    latency: np.ndarray,
    causes: list[str | None],
    timeouts: np.ndarray,
) -> list[TransactionResult]:
    tx = w.txns[name]
    out = []
    u = rng.random(len(t))
    where = rng.integers(0, len(tx.steps), len(t))
    for i in range(len(t)):
        ms = float(latency[i])
        cause = causes[i]
        if timeouts[i]:
            out.append(
                _fail(t[i], version, name, fn.TIMEOUT_MS, None, "timed out after 10s", tx, 0)
            )
            continue
        if cause is None:
            out.append(TransactionResult(float(t[i]), version, name, True, round(ms, 1), 200))
            continue
        f = fn.pick_failures(rng, cause, 1)[0][1]
        step = int(where[i])
        if f.latency == "fast":
            # The balancer or the socket answers at once: the steps before it, then a few ms.
            ms = ms * (step + 0.1) / len(tx.steps) + 1.0 + 4.0 * float(u[i])
        elif f.latency == "timeout":
            ms = fn.TIMEOUT_MS
        elif f.latency == "connect":
            ms = ms * step / len(tx.steps) + 5000.0
        out.append(_fail(t[i], version, name, ms, f.status, f.reason, tx, step))
    return out


def _fail(
    t: float,
    version: str,
    name: str,
    ms: float,
    status: int | None,
    reason: str,
    tx: Txn,
    step: int,
) -> TransactionResult:
    title = f"step {step + 1} {tx.steps[step]!r}"
    error = f"{title} (GET https://shop.internal/{tx.steps[step]}): {reason}"
    return TransactionResult(float(t), version, name, False, round(ms, 1), status, error)


def _draw_txn(
    rng: np.random.Generator, w: World, eff: Effects, name: str
) -> tuple[list[TransactionResult], list[TransactionResult]]:
    """The paired runs of one transaction (both versions at the same instants) and stable's
    history before t = 0."""
    t, probe = fn.instants(rng, w.fleet, w.rate, 0.0, DURATION_S)
    shared_u = rng.random(len(t))
    obs: list[TransactionResult] = []
    for version in ("stable", "canary"):
        jitter = np.abs(rng.normal(0.0, w.fleet.pair_jitter_s[probe]))
        tv = np.maximum(t + jitter, 0.0)
        obs += _runs(rng, w, eff, name, version, tv, probe, shared_u)
    th, ph = fn.instants(rng, w.fleet, min(HISTORY_RATE, w.rate), fn.START_S, 0.0)
    hist = _runs(rng, w, eff, name, "stable", th, ph, rng.random(len(th)))
    return obs, hist


def plan(kind: str, seed: int) -> tuple[np.random.Generator, World, Effects, Truth, float]:
    """The draw's world, effects, truth and latency objective, before any run is drawn."""
    if kind not in KINDS:
        raise ValueError(f"unknown scenario {kind!r}; known: {', '.join(KINDS)}")
    rng = np.random.default_rng([seed, KINDS.index(kind), TAG])
    w = world(kind, rng)
    eff, truth, slo = scenario(kind, rng, w)
    return rng, w, eff, truth, slo


def generate_field(kind: str, seed: int) -> tuple[Recording, Truth]:
    """One recording of scenario ``kind`` drawn with the field noise; deterministic per seed."""
    rng, w, eff, truth, slo = plan(kind, seed)
    obs: list[TransactionResult] = []
    history: list[TransactionResult] = []
    for name in w.txns:
        o, h = _draw_txn(rng, w, eff, name)
        obs += o
        history += h
    spec = Spec(list(w.txns), latency_slo_ms=slo)
    rec, truth = build(kind, seed, spec, truth, obs, history, None, "field")
    if w.lead_s:
        # The isolated phase: the schedule starts at weight 0 for one step, then 5% a minute
        # (the format takes it as initial_weight 0; explicit steps must be at least 1).
        rec.rollout = RolloutModel(
            initial_weight=0, step_weight=5, max_weight=100, step_interval_s=60
        )
    return rec, truth
