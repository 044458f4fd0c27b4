"""The second noise generator of the bench (`--noise alt`): scenarios.py's classes, other noise."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from canary.bench.scenarios import (
    _MANY,
    _SEED_ORDER,
    DURATION_S,
    HISTORY_S,
    KINDS,
    P95_FACTOR,
    SIGMA,
    TXNS,
    Effect,
    Families,
    Mult,
    Spec,
    Truth,
    _season,
    _window,
    build,
    scenario,
)
from canary.probing.result import TransactionResult
from canary.replay import Recording

# Mixed into every alt seed sequence, so that no alt draw shares its random stream with a draw of
# the default generator (whose sequences are [seed, kind]) whatever the seeds and offsets.
ALT_ENTROPY = 0xA17E
TIMEOUT_MS = 10_000.0  # the probes' step timeout: a run this slow is a failure, cut there
ISOLATED_S = 60.0  # length of the weight-0 isolated phase, when a draw has one
HISTORY_RATE = 0.2  # stable's monitoring runs per second and transaction before the rollout
_MAX_RUN = 6  # longest run of failures from the clustering alone
_MC = 20_000  # draws used to place each transaction's p95 where the default generator has it

# Failures as probes report them: (HTTP status or None, message). Drawn per failure.
_FAILURES = (
    (500, "expected status 200, got 500"),
    (503, "expected status 200, got 503"),
    (502, "step 'submit': expected status 200, got 502"),
    (None, "connection reset by peer while reading the body"),
    (200, "step 'search': validation failed: $.results is empty"),
)
_FAILURE_WEIGHTS = np.array([0.35, 0.25, 0.1, 0.15, 0.15])


@dataclass(frozen=True)
class Shape:
    """One transaction's latency in the alt noise: a floor (the work every run does) plus a
    gamma or Weibull body whose consecutive runs are correlated (normal scores, a share of
    them an AR(1) series, mapped through the body's quantiles so the body keeps its shape),
    scaled so that the marginal p95 (floor, body and tail) is where the default generator puts
    it; GC pauses (2-4x), rare 5-20x outliers and timeouts on top; failures in short runs."""

    family: str  # "gamma" or "weibull"
    k: float  # the body's shape parameter
    scale: float  # ms
    floor: float  # share of the median that every run takes
    rho: float  # AR(1) coefficient of the correlated part of consecutive runs' scores
    share: float  # share of the scores' variance that is that AR(1) part
    gc_p: float
    out_p: float
    timeout_p: float
    burst: float  # mean length of a run of failures (they come in short runs)

    def body(self, z: np.ndarray) -> np.ndarray:
        """Floor plus body at standard normal scores ``z``, in units of the body's median."""
        if self.family == "gamma":
            # Wilson-Hilferty: a gamma(k) quantile from a normal score, close for k >= 1.
            c = 1.0 / (9.0 * self.k)
            b = np.maximum(1.0 - c + z * math.sqrt(c), 0.05) ** 3 / (1.0 - c) ** 3
        else:
            u = np.clip(_normal_cdf(z), 1e-12, 1.0 - 1e-12)
            b = ((-np.log1p(-u)) / math.log(2.0)) ** (1.0 / self.k)
        return self.floor + (1.0 - self.floor) * b

    def scores(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Standard normal scores of ``n`` consecutive runs, a share of them AR(1)."""
        own = rng.standard_normal(n) * math.sqrt(1.0 - self.share)
        return _ar1(rng, n, self.rho, math.sqrt(self.share)) + own

    def tail(self, rng: np.random.Generator, n: int) -> np.ndarray:
        u = rng.random(n)
        gc = np.where(u < self.gc_p, rng.uniform(2.0, 4.0, n), 1.0)
        out = np.where(u > 1.0 - self.out_p, rng.uniform(5.0, 20.0, n), 1.0)
        return gc * out


@dataclass(frozen=True)
class Arrivals:
    """When one version's runs of a transaction happen: batches of runs started together, at
    jittered gaps with an occasional pause of several seconds, some runs lost."""

    batch: int  # mean runs per batch
    offset: float  # where this version's first batch falls, as a share of a gap
    keep: float  # share of runs that arrive (lost runs; a stable with fewer runs)
    pause_p: float  # chance that a gap is followed by a 5-20 s pause

    def times(self, t_lo: float, t_hi: float, rate: float, rng: np.random.Generator) -> np.ndarray:
        gap = self.batch / rate
        nb = int((t_hi - t_lo) / gap * 1.5) + 4
        gaps = rng.gamma(2.0, gap / 2.0, nb)
        gaps += np.where(rng.random(nb) < self.pause_p, rng.uniform(5.0, 20.0, nb), 0.0)
        starts = t_lo + self.offset * gap + np.concatenate(([0.0], np.cumsum(gaps[:-1])))
        starts = starts[starts < t_hi]
        sizes = rng.integers(max(1, self.batch - 2), self.batch + 3, starts.size)
        t = np.repeat(starts, sizes)
        # Runs of one batch start within a fraction of a second of each other (concurrency).
        t = t + rng.exponential(0.15, t.size)
        t = t[(t >= t_lo) & (t < t_hi) & (rng.random(t.size) < self.keep)]
        return np.sort(t)


@dataclass(frozen=True)
class Noise:
    """Everything one alt recording draws its noise from, besides the scenario's effects."""

    shapes: dict[str, Shape]
    arrivals: dict[str, Arrivals]  # by version
    own: dict[str, Mult]  # each version's slow wander, by version
    shared: Mult  # slow wander under both versions
    history_lat: float  # yesterday's regime: stable's history slower or faster by this factor
    history_err: float  # and its failures more or fewer by this factor
    steps: list[int] | None  # the schedule, with a weight-0 isolated phase first when set
    warmup: Effect | None  # a mild warm-up of the canary in a class that has none of its own


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    erf = np.frompyfunc(math.erf, 1, 1)
    return 0.5 * (1.0 + np.asarray(erf(x / math.sqrt(2.0)), dtype=float))


def _ar1(rng: np.random.Generator, n: int, rho: float, sd: float) -> np.ndarray:
    """A stationary AR(1) series of ``n`` values with correlation ``rho`` and sd ``sd``."""
    e = rng.standard_normal(n) * sd * math.sqrt(1.0 - rho * rho)
    x = np.empty(n)
    if n:
        x[0] = sd * rng.standard_normal()
    for i in range(1, n):
        x[i] = rho * x[i - 1] + e[i]
    return x


def _clustered(rng: np.random.Generator, p: np.ndarray, mean_run: float) -> np.ndarray:
    """Failures in short runs: a run outside a burst starts one with probability q, and a burst
    lasts a geometric number of runs (about ``mean_run``, at most ``_MAX_RUN``). q is set so
    that the share of runs failing around run i is p[i]: p = q m / (q m + 1 - q) for q."""
    r = 1.0 / mean_run
    m = (1.0 - (1.0 - r) ** _MAX_RUN) / r  # the mean of the capped length
    p = np.clip(p, 0.0, 0.95)
    q = p / (m * (1.0 - p) + p)
    start = rng.random(p.size) < q
    extra = np.minimum(rng.geometric(r, p.size), _MAX_RUN) - 1  # runs after the first
    out = np.zeros(p.size, dtype=bool)
    left = 0
    for i in range(p.size):
        if left > 0:
            out[i] = True
            left -= 1
        elif start[i]:
            out[i] = True
            left = int(extra[i])
    return out


def _slow(rng: np.random.Generator, sd: float, tau_s: float) -> Mult:
    """Slow wander of another kind than the default's Ornstein-Uhlenbeck path: a sum of three
    sinusoids (periods around ``tau_s`` to 6x it) or regime switches (a new level every few
    ``tau_s`` on average, reached over 5-20 s), with sd ``sd`` of log latency."""
    if rng.random() < 0.5:
        periods = rng.uniform(2.0 * tau_s, 6.0 * tau_s, 3)
        phases = rng.uniform(0.0, 2.0 * np.pi, 3)
        amps = rng.dirichlet(np.ones(3)) ** 0.5
        amps *= sd * math.sqrt(2.0) / math.sqrt(float(np.sum(amps**2)))

        def sines(t: np.ndarray) -> np.ndarray:
            x = sum(
                a * np.sin(2.0 * np.pi * t / p + f)
                for a, p, f in zip(amps, periods, phases, strict=True)
            )
            return np.exp(np.asarray(x))

        return sines
    lo, hi = -HISTORY_S, DURATION_S
    n = int((hi - lo) / tau_s) + 4
    ramp = float(rng.uniform(5.0, 20.0))
    switches = lo + np.cumsum(ramp + 1.0 + rng.exponential(1.5 * tau_s, n))
    levels = sd * rng.standard_normal(n + 1)
    # A knot at each switch and one ``ramp`` after: the level moves linearly in between.
    grid = np.concatenate(([lo - 1.0], np.ravel(np.column_stack((switches, switches + ramp)))))
    vals = np.concatenate(([levels[0]], np.ravel(np.column_stack((levels[:-1], levels[1:])))))
    return lambda t: np.exp(np.interp(t, grid, vals))


def _warmup_shaped(rng: np.random.Generator, amp_lo: float = 0.6, amp_hi: float = 1.1) -> Effect:
    """A canary's transient of another shape than the default's exponential: linear, stepwise
    or exponential decay over 10-60 s, plus a blip of errors, from t = 0 (the isolated phase
    when there is one, else the first step)."""
    amp = float(rng.uniform(amp_lo, amp_hi))
    dur = float(rng.uniform(10.0, 60.0))
    form = str(rng.choice(["linear", "steps", "exponential"]))

    def lat(t: np.ndarray) -> np.ndarray:
        u = np.maximum(t, 0.0) / dur
        if form == "linear":
            return 1.0 + amp * np.clip(1.0 - u, 0.0, 1.0)
        if form == "steps":
            return 1.0 + amp * np.select([u < 1 / 3, u < 2 / 3, u < 1.0], [1.0, 0.5, 0.2], 0.0)
        return 1.0 + amp * np.exp(-4.0 * u)

    blip_s = float(rng.uniform(5.0, 15.0))
    # A mild warm-up (amplitude under 0.5) fails less while it lasts.
    blip = float(rng.uniform(0.05, 0.2)) * min(1.0, amp)
    return Effect(latency=lat, errors=_window(0.0, blip_s, blip, 0.0))


def _alt_warmup(rng: np.random.Generator) -> tuple[Effect, float]:
    eff = _warmup_shaped(rng)
    return eff, 0.0


def _shape(txn: str, spread: float, rng: np.random.Generator) -> Shape:
    """A transaction's own latency shape, placed so that its p95 is the default generator's."""
    median = (TXNS.get(txn) or _MANY[txn])[0]
    family = "gamma" if rng.random() < 0.5 else "weibull"
    k = float(rng.uniform(3.0, 9.0) if family == "gamma" else rng.uniform(1.6, 3.2))
    # A wider spread (the noisy class) flattens the body and fattens the tail.
    k = max(1.2, k / spread**2) if family == "gamma" else max(1.1, k / spread)
    shape = Shape(
        family=family,
        k=k,
        scale=1.0,
        floor=float(rng.uniform(0.2, 0.5)),
        rho=float(rng.uniform(0.3, 0.8)),
        share=float(rng.uniform(0.3, 0.7)),
        gc_p=float(rng.uniform(0.005, 0.02)) * spread,
        out_p=float(rng.uniform(0.001, 0.004)) * spread,
        timeout_p=float(rng.uniform(0.0002, 0.001)),
        burst=float(rng.uniform(1.3, 2.5)),
    )
    unit = shape.body(rng.standard_normal(_MC)) * shape.tail(rng, _MC)
    target = median * P95_FACTOR
    return replace(shape, scale=target / float(np.percentile(unit, 95)))


def draw_noise(spec: Spec, kind: str, rng: np.random.Generator, steps: list[int] | None) -> Noise:
    spread = spec.sigma / SIGMA
    shapes = {txn: _shape(txn, spread, rng) for txn in spec.txns}
    batch = int(rng.integers(3, 11))
    arrivals = {
        v: Arrivals(
            batch=batch,
            offset=float(rng.random()),
            keep=1.0 - float(rng.uniform(0.005, 0.03)),
            pause_p=float(rng.uniform(0.0, 0.02)),
        )
        for v in ("stable", "canary")
    }
    if rng.random() < 0.35:
        s = arrivals["stable"]
        arrivals["stable"] = Arrivals(
            s.batch, s.offset, s.keep * float(rng.uniform(0.6, 0.9)), s.pause_p
        )
    # Each version wanders a little by itself; most of the slow wander is shared.
    own_sd = float(rng.uniform(0.005, 0.015))
    own = {v: _slow(rng, own_sd, float(rng.uniform(60.0, 240.0))) for v in ("stable", "canary")}
    shared = _slow(rng, float(rng.uniform(0.02, 0.05)), float(rng.uniform(60.0, 300.0)))
    other_regime = rng.random() < 0.35
    warm = None
    if "warm-up" not in kind and rng.random() < 0.3:
        warm = _warmup_shaped(rng, 0.1, 0.4)
    return Noise(
        shapes=shapes,
        arrivals=arrivals,
        own=own,
        shared=shared,
        history_lat=float(rng.uniform(0.92, 1.08)) if other_regime else 1.0,
        history_err=float(rng.uniform(0.6, 1.5)) if other_regime else 1.0,
        steps=steps,
        warmup=warm,
    )


def _stream(
    spec: Spec,
    noise: Noise,
    txn: str,
    version: str,
    t_lo: float,
    t_hi: float,
    rate: float,
    rng: np.random.Generator,
) -> list[TransactionResult]:
    """One version's runs of one transaction over [t_lo, t_hi)."""
    shape = noise.shapes[txn]
    err = (TXNS.get(txn) or _MANY[txn])[1] if spec.base_error is None else spec.base_error
    t = noise.arrivals[version].times(t_lo, t_hi, rate, rng)
    n = t.size
    mult = noise.own[version](t) * noise.shared(t)
    # Timeouts are part of the base failure rate, not on top of it.
    p_err = np.full(n, max(0.0, err - shape.timeout_p))
    if t_hi <= 0.0:
        mult = mult * noise.history_lat
        p_err = p_err * noise.history_err
    if spec.season:
        mult = mult * _season(t)
        p_err = p_err * _season(t)
    own = spec.canary if version == "canary" else spec.stable
    effects = [spec.common.get(txn), own.get(txn)]
    if version == "canary":
        effects.append(noise.warmup)
    for eff in effects:
        if eff is None:
            continue
        if eff.latency is not None:
            mult = mult * eff.latency(t)
        if eff.errors is not None:
            p_err = p_err + eff.errors(t)
    body = shape.body(shape.scores(rng, n))
    lat = shape.scale * mult * body * shape.tail(rng, n)
    timeout = (rng.random(n) < shape.timeout_p) | (lat >= TIMEOUT_MS)
    lat = np.where(timeout, TIMEOUT_MS, lat)
    failed = _clustered(rng, p_err, shape.burst) | timeout
    which = rng.choice(len(_FAILURES), n, p=_FAILURE_WEIGHTS / _FAILURE_WEIGHTS.sum())
    out = []
    for ti, f, to, ms, w in zip(t, failed, timeout, lat, which, strict=True):
        if not f:
            out.append(TransactionResult(float(ti), version, txn, True, float(ms), 200))
            continue
        status, msg = _FAILURES[w]
        if to:
            status, msg = None, f"timeout: no complete response within {TIMEOUT_MS / 1000:.0f}s"
        out.append(TransactionResult(float(ti), version, txn, False, float(ms), status, msg))
    return out


def generate_alt(kind: str, seed: int) -> tuple[Recording, Truth]:
    """One alt recording of scenario ``kind``; the same (kind, seed) always gives the same data,
    and never the data of the default generator's (kind, seed)."""
    if kind not in KINDS:
        raise ValueError(f"unknown scenario {kind!r}; known: {', '.join(KINDS)}")
    rng = np.random.default_rng([ALT_ENTROPY, seed, _SEED_ORDER.index(kind)])
    isolated = bool(rng.random() < 0.5)
    steps = [0, *range(5, 101, 5)] if isolated else None
    fam = Families(warmup=_alt_warmup, wander=_slow, lead_s=ISOLATED_S if isolated else 0.0)
    spec, truth = scenario(kind, rng, fam)
    noise = draw_noise(spec, kind, rng, steps)
    obs: list[TransactionResult] = []
    history: list[TransactionResult] = []
    for txn in spec.txns:
        history += _stream(spec, noise, txn, "stable", -HISTORY_S, 0.0, HISTORY_RATE, rng)
        for version in ("stable", "canary"):
            obs += _stream(spec, noise, txn, version, 0.0, DURATION_S, spec.rate, rng)
    return build(kind, seed, spec, truth, obs, history, steps=steps, tag="synthetic alt")
