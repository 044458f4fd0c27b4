"""Faults the demo service injects, chosen at start: errors, latency, growing latency, breakage."""

from __future__ import annotations

import random
import threading
import time
from collections import deque
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
# Users' requests carry this header (the demo's load generator sets it); probes do not.
USER_HEADER = "X-Demo-User"
USER_WINDOW_S = 2.0  # the users' request rate is counted over this sliding window
MAX_OVERLOAD_ERRORS = 0.6


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
    # Saturation: beyond ``user_capacity_rps`` requests per second from users (0 = no limit),
    # every request is slower, and fails more often, for each request per second over it.
    user_capacity_rps: float = 0.0
    overload_ms_per_rps: float = 40.0
    overload_errors_per_rps: float = 0.04
    started: float = field(default_factory=time.monotonic)
    _rng: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)
    _users: deque[float] = field(init=False, repr=False, default_factory=deque)

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error rate must be within [0, 1], got {self.error_rate}")
        if self.latency_ms < 0 or self.latency_growth_ms_per_s < 0:
            raise ValueError("latencies must not be negative")
        if min(self.user_capacity_rps, self.overload_ms_per_rps, self.overload_errors_per_rps) < 0:
            raise ValueError("saturation settings must not be negative")
        self._rng = random.Random(self.seed)

    def user_request(self, now: float | None = None) -> None:
        """Count one request from a user (not a probe) towards the users' rate."""
        if self.user_capacity_rps > 0:
            with self._lock:
                self._users.append(time.monotonic() if now is None else now)

    def overload(self, now: float | None = None) -> float:
        """Users' requests per second beyond the capacity, over the last USER_WINDOW_S."""
        if self.user_capacity_rps <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._users and self._users[0] < now - USER_WINDOW_S:
                self._users.popleft()
            rate = len(self._users) / USER_WINDOW_S
        return max(0.0, rate - self.user_capacity_rps)

    def _uniform(self) -> float:
        with self._lock:
            return self._rng.random()

    def should_fail(self, now: float | None = None) -> bool:
        """Whether this request is answered 500: the ``error_rate``, plus more when overloaded."""
        extra = min(MAX_OVERLOAD_ERRORS, self.overload(now) * self.overload_errors_per_rps)
        rate = min(1.0, self.error_rate + extra)
        return rate > 0 and self._uniform() < rate

    def delay_seconds(self, now: float | None = None) -> float:
        """Latency to add now: the fixed part with jitter, plus the part grown since start."""
        delay_ms = 0.0
        if self.latency_ms > 0:
            delay_ms += self.latency_ms * (1 + LATENCY_JITTER * (2 * self._uniform() - 1))
        if self.latency_growth_ms_per_s > 0:
            elapsed = (time.monotonic() if now is None else now) - self.started
            delay_ms += self.latency_growth_ms_per_s * max(0.0, elapsed)
        delay_ms += self.overload(now) * self.overload_ms_per_rps
        return delay_ms / 1000.0

    def broken_mode(self, endpoint: str) -> str | None:
        """``"500"`` or ``"body"`` when ``endpoint`` is broken, else None."""
        for b in self.broken:
            if b.endpoint == endpoint:
                return b.mode
        return None
