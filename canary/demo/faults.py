"""Faults the demo service injects, chosen at start: errors, latency, growing latency, breakage."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

# Endpoint names accepted by --broken-endpoint, matched against the route that served a request.
ENDPOINTS = (
    "home",
    "products",
    "product",
    "search",
    "cart",
    "cart-get",
    "checkout",
    "login",
    "account",
    "feedback",
    "echo",
)
BREAK_MODES = ("500", "body")
LATENCY_JITTER = 0.1  # ± fraction of the added latency


@dataclass(frozen=True, slots=True)
class BrokenEndpoint:
    """One endpoint that always fails: with a 500, or with a 200 whose body is wrong."""

    endpoint: str
    mode: str = "500"

    @classmethod
    def parse(cls, text: str) -> BrokenEndpoint:
        """``checkout`` (always 500) or ``checkout:body`` (right status, wrong body)."""
        name, _, mode = text.partition(":")
        name, mode = name.strip(), (mode.strip() or "500")
        if name not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {name!r}; known endpoints: {', '.join(ENDPOINTS)}")
        if mode not in BREAK_MODES:
            raise ValueError(f"unknown break mode {mode!r}; known modes: {', '.join(BREAK_MODES)}")
        return cls(name, mode)


@dataclass(slots=True)
class Faults:
    """What to do wrong; decisions are drawn from one seeded generator, so runs are repeatable."""

    error_rate: float = 0.0
    latency_ms: float = 0.0
    latency_growth_ms_per_s: float = 0.0
    broken: tuple[BrokenEndpoint, ...] = ()
    seed: int | None = None
    started: float = field(default_factory=time.monotonic)
    _rng: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error rate must be within [0, 1], got {self.error_rate}")
        if self.latency_ms < 0 or self.latency_growth_ms_per_s < 0:
            raise ValueError("latencies must not be negative")
        self._rng = random.Random(self.seed)

    def _uniform(self) -> float:
        with self._lock:
            return self._rng.random()

    def should_fail(self) -> bool:
        """Whether this request is one of the ``error_rate`` fraction answered 500."""
        return self.error_rate > 0 and self._uniform() < self.error_rate

    def delay_seconds(self, now: float | None = None) -> float:
        """Latency to add now: the fixed part with jitter, plus the part grown since start."""
        delay_ms = 0.0
        if self.latency_ms > 0:
            delay_ms += self.latency_ms * (1 + LATENCY_JITTER * (2 * self._uniform() - 1))
        if self.latency_growth_ms_per_s > 0:
            elapsed = (time.monotonic() if now is None else now) - self.started
            delay_ms += self.latency_growth_ms_per_s * max(0.0, elapsed)
        return delay_ms / 1000.0

    def broken_mode(self, endpoint: str) -> str | None:
        """``"500"`` or ``"body"`` when ``endpoint`` is broken, else None."""
        for b in self.broken:
            if b.endpoint == endpoint:
                return b.mode
        return None
