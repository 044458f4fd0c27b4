"""The field generator's noise: a probe fleet's paired instants, backend hosts, slow paths, pauses, spikes, failures."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Mult = Callable[[np.ndarray], np.ndarray]
START_S = -3600.0  # the stable history begins an hour before first traffic
END_S = 1500.0  # and the rollout lasts 25 minutes
TIMEOUT_MS = 10_000.0  # a probe's whole-transaction deadline


@dataclass(frozen=True)
class Path:
    """A slow random path in log units, sampled on a grid and interpolated between points."""

    grid: np.ndarray
    values: np.ndarray

    def __call__(self, t: np.ndarray) -> np.ndarray:
        return np.interp(t, self.grid, self.values)


def smooth_path(rng: np.random.Generator, sd: float, scale_s: float) -> Path:
    """White noise under a Gaussian kernel of width ``scale_s``, with standard deviation ``sd``.

    Unlike a mean-reverting jump process its increments are smooth: runs a few seconds apart
    see nearly the same value, runs several ``scale_s`` apart independent ones.
    """
    step = max(1.0, scale_s / 10.0)
    n = int((END_S - START_S) / step) + 2
    width = scale_s / step / 2.0
    half = int(4 * width) + 1
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / width) ** 2)
    kernel /= math.sqrt(float(np.sum(kernel**2)))
    values = np.convolve(rng.standard_normal(n + 2 * half), kernel, mode="valid") * sd
    return Path(START_S + step * np.arange(n), values)


@dataclass(frozen=True)
class Regimes:
    """A two-state process (a noisy neighbour present or not) as a step function in log units."""

    starts: np.ndarray
    values: np.ndarray

    def __call__(self, t: np.ndarray) -> np.ndarray:
        i = np.searchsorted(self.starts, t, side="right") - 1
        return self.values[np.clip(i, 0, len(self.values) - 1)]


def neighbour_regimes(
    rng: np.random.Generator, mean_off_s: float, mean_on_s: float, extra: float
) -> Regimes:
    starts, values = [START_S], [0.0]
    t, on = START_S, bool(rng.random() < mean_on_s / (mean_on_s + mean_off_s))
    values[0] = extra if on else 0.0
    while t < END_S:
        t += float(rng.exponential(mean_on_s if on else mean_off_s))
        on = not on
        starts.append(t)
        values.append(extra * float(rng.uniform(0.5, 1.5)) if on else 0.0)
    return Regimes(np.array(starts), np.array(values))


@dataclass(frozen=True)
class Pauses:
    """Stop-the-world pauses of one backend host (GC, a busy disk): start times and lengths (s)."""

    starts: np.ndarray
    lengths: np.ndarray

    def added_ms(self, t: np.ndarray, server_ms: np.ndarray) -> np.ndarray:
        """What the pause nearest before each run's end adds to it: the rest of a pause in
        progress when the run arrives, or the whole of one that starts while it is served."""
        if len(self.starts) == 0:
            return np.zeros_like(t)
        i = np.searchsorted(self.starts, t + server_ms / 1000.0, side="right") - 1
        ok = i >= 0
        s = self.starts[np.clip(i, 0, None)]
        d = self.lengths[np.clip(i, 0, None)]
        added = np.clip(s + d - np.maximum(s, t), 0.0, d)
        return np.where(ok, added * 1000.0, 0.0)


def host_pauses(rng: np.random.Generator, every_s: float, mean_ms: float) -> Pauses:
    n = int((END_S - START_S) / every_s * 1.5) + 10
    starts = START_S + np.cumsum(rng.exponential(every_s, n))
    starts = starts[starts < END_S + 10.0]
    lengths = np.minimum(rng.exponential(mean_ms / 1000.0, len(starts)), 1.0)
    return Pauses(starts, lengths)


@dataclass(frozen=True)
class Backends:
    """One version's hosts behind the load balancer, each with its own level, neighbours,
    pauses and (for a fresh canary) cold start."""

    level: np.ndarray  # log multiplier of each host: host-level random effect
    neighbours: list[Regimes]
    pauses: list[Pauses]
    warm_amp: np.ndarray  # extra latency at t = 0 on a cold host (1.0: twice as slow)
    warm_tau_s: np.ndarray

    def log_mult(self, host: np.ndarray, t: np.ndarray) -> np.ndarray:
        out = self.level[host].astype(float)
        for h, reg in enumerate(self.neighbours):
            sel = host == h
            if sel.any():
                out[sel] += reg(t[sel])
        return out

    def warm(self, host: np.ndarray, t: np.ndarray) -> np.ndarray:
        tt = np.maximum(t, 0.0)
        return 1.0 + self.warm_amp[host] * np.exp(-tt / self.warm_tau_s[host])

    def paused_ms(self, host: np.ndarray, t: np.ndarray, server_ms: np.ndarray) -> np.ndarray:
        out = np.zeros_like(t)
        for h, p in enumerate(self.pauses):
            sel = host == h
            if sel.any():
                out[sel] = p.added_ms(t[sel], server_ms[sel])
        return out


def backends(
    rng: np.random.Generator, n: int, spread: float, warm_amp: float, warm_tau_s: float
) -> Backends:
    level = rng.normal(0.0, spread, n)
    return Backends(
        # Centred: hosts spread a version's runs but do not make one version slower than the
        # other for the whole rollout (that would be a regression, not noise).
        level=level - level.mean(),
        # A neighbour costs its host 3-10% for a minute or three, every 7-20 minutes: a few
        # percent on the version's mean while it stays.
        neighbours=[
            neighbour_regimes(
                rng, rng.uniform(400, 1200), rng.uniform(60, 180), rng.uniform(0.03, 0.10)
            )
            for _ in range(n)
        ],
        pauses=[host_pauses(rng, rng.uniform(10, 40), rng.uniform(40, 150)) for _ in range(n)],
        warm_amp=warm_amp * rng.uniform(0.7, 1.3, n),
        warm_tau_s=warm_tau_s * rng.uniform(0.7, 1.4, n),
    )


@dataclass(frozen=True)
class Fleet:
    """The probe hosts: each runs every transaction on its own cron-like offset against both
    versions at once (a pair a few ms apart), over its own network path."""

    offsets: np.ndarray  # fraction of the period
    rtt_ms: np.ndarray  # one round trip to the shop
    loss: np.ndarray  # scale of retransmit-like spikes on this host's path
    pair_jitter_s: np.ndarray  # how far apart its stable and canary requests leave
    sched_jitter_s: float
    skip: float  # share of instants a busy host misses

    @property
    def size(self) -> int:
        return len(self.offsets)


def fleet(rng: np.random.Generator, lossy: float = 1.0) -> Fleet:
    n = int(rng.integers(2, 6))
    loss = rng.lognormal(0.0, 0.6, n) * lossy
    loss[int(rng.integers(n))] *= rng.uniform(1.0, 4.0)  # one host sits on a worse link
    return Fleet(
        offsets=rng.random(n),
        rtt_ms=rng.uniform(0.5, 12.0, n),
        loss=loss,
        pair_jitter_s=rng.uniform(0.002, 0.08, n),
        sched_jitter_s=float(rng.uniform(0.05, 0.5)),
        skip=float(rng.uniform(0.005, 0.02)),
    )


def instants(
    rng: np.random.Generator, f: Fleet, rate: float, t_lo: float, t_hi: float
) -> tuple[np.ndarray, np.ndarray]:
    """When the fleet runs one transaction (``rate`` runs/s per version in all) and from which
    probe host: each host every ``size / rate`` seconds, with scheduling jitter and misses."""
    period = f.size / rate
    ts, hs = [], []
    for h in range(f.size):
        k = np.arange(math.ceil((t_hi - t_lo) / period) + 1)
        t = t_lo + (f.offsets[h] + k) * period + rng.normal(0.0, f.sched_jitter_s, len(k))
        keep = (t >= t_lo) & (t < t_hi) & (rng.random(len(k)) >= f.skip)
        ts.append(t[keep])
        hs.append(np.full(int(keep.sum()), h))
    t_all, h_all = np.concatenate(ts), np.concatenate(hs)
    order = np.argsort(t_all, kind="stable")
    return t_all[order], h_all[order]


def retransmits_ms(rng: np.random.Generator, loss: np.ndarray) -> np.ndarray:
    """TCP-like stalls: a lost segment costs the minimum RTO (200 ms), a lost SYN 1 s, a
    second lost SYN 3 s; each more likely on a lossy path."""
    u = rng.random(len(loss))
    out = np.zeros(len(loss))
    out[u < 0.003 * loss] = 200.0
    out[u < 0.0008 * loss] = 1000.0
    out[u < 0.00015 * loss] = 3000.0
    return out


@dataclass(frozen=True)
class Window:
    """A span when something outside both versions fails part of the runs (a database
    failover, a load-balancer reload, a probe host's resolver down)."""

    start: float
    end: float
    fail: float  # share of runs that fail in it
    slow: float = 1.0  # latency multiplier of the runs that pass
    probe_host: int | None = None  # only runs from this probe host (a local fault)
    cause: str = "db"

    def active(self, t: np.ndarray, probe_host: np.ndarray) -> np.ndarray:
        on = (t >= self.start) & (t < self.end)
        if self.probe_host is not None:
            on &= probe_host == self.probe_host
        return on


@dataclass(frozen=True)
class Failure:
    status: int | None
    reason: str
    latency: str  # "body": as served; "fast": the balancer answers; "timeout"; "connect"


# Why probes fail, as a fleet's runner words it; the weights are a real shop's mix.
BASE_FAILURES: tuple[tuple[float, Failure], ...] = (
    (0.35, Failure(500, "expected status 200, got 500", "body")),
    (0.15, Failure(502, "expected status 200, got 502", "fast")),
    (0.15, Failure(503, "expected status 200, got 503", "fast")),
    (0.10, Failure(None, "request failed: connection reset by peer", "body")),
    (0.05, Failure(None, "timed out after 10s", "timeout")),
    (0.20, Failure(200, "expected body to contain 'total', not found", "body")),
)
CAUSES: dict[str, tuple[tuple[float, Failure], ...]] = {
    "base": BASE_FAILURES,
    "regression": (
        (0.7, Failure(500, "expected status 200, got 500", "body")),
        (0.3, Failure(200, "expected body to contain 'total', not found", "body")),
    ),
    "cold": (
        (0.5, Failure(503, "expected status 200, got 503", "fast")),
        (0.5, Failure(None, "cannot connect: connection refused", "fast")),
    ),
    "db": (
        (0.8, Failure(500, "expected status 200, got 500", "body")),
        (0.2, Failure(None, "timed out after 10s", "timeout")),
    ),
    "lb": (
        (0.6, Failure(502, "expected status 200, got 502", "fast")),
        (0.4, Failure(504, "expected status 200, got 504", "connect")),
    ),
    "dns": ((1.0, Failure(None, "cannot connect: name resolution failed for shop", "fast")),),
}


def pick_failures(rng: np.random.Generator, cause: str, n: int) -> list[tuple[int, Failure]]:
    """``n`` failures of ``cause`` as (index into its mix, failure)."""
    mix = CAUSES[cause]
    w = np.array([p for p, _ in mix])
    idx = rng.choice(len(mix), size=n, p=w / w.sum())
    return [(int(i), mix[int(i)][1]) for i in idx]
