"""The one retry-with-backoff helper for calls that fail while Redis is away."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import redis

from canary.errors import StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")
# What "Redis is away" looks like from here: the Store maps its errors to StoreError, but a
# coordinator step also publishes to the broker (apply_async on the same Redis) outside any
# Store call, and that can fail with the client's own error.
UNREACHABLE: tuple[type[Exception], ...] = (StoreError, redis.RedisError)


def retry(
    fn: Callable[[], T],
    *,
    deadline_s: float,
    what: str,
    first_delay_s: float = 0.5,
    max_delay_s: float = 8.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call ``fn`` until it returns; while it raises UNREACHABLE, wait and try again.

    The waits double from ``first_delay_s`` up to ``max_delay_s``; the last error is raised once
    the next wait would end past ``deadline_s`` from the first call.
    """
    deadline = clock() + deadline_s
    delay = first_delay_s
    while True:
        try:
            return fn()
        except UNREACHABLE as exc:
            if clock() + delay >= deadline:
                raise
            log.warning("%s: Redis unreachable (%s); retrying in %.1fs", what, exc, delay)
            sleep(delay)
            delay = min(delay * 2, max_delay_s)
