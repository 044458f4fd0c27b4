"""Time-window dedupe: the same alert key is delivered at most once per window."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from canary.notifiers.base import Alert, Notifier


class DedupeWindow:
    """Remembers when each key was last let through; thread-safe and bounded in size."""

    def __init__(
        self,
        window_s: float,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s = window_s
        self.max_keys = max_keys
        self._clock = clock
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def admit(self, key: str) -> bool:
        """True the first time ``key`` is seen in the window (and it is recorded), else False."""
        now = self._clock()
        with self._lock:
            last = self._seen.get(key)
            if last is not None and now - last < self.window_s:
                return False
            self._seen[key] = now
            if len(self._seen) > self.max_keys:
                # Forget the expired first, then the oldest: memory must not grow with keys.
                self._seen = {k: t for k, t in self._seen.items() if now - t < self.window_s}
                while len(self._seen) > self.max_keys:
                    self._seen.pop(next(iter(self._seen)))
            return True

    def forget(self, key: str) -> None:
        """Let ``key`` through again at once (after a delivery that failed)."""
        with self._lock:
            self._seen.pop(key, None)


class Deduped:
    """A notifier that drops alerts whose ``dedupe_key`` it already passed on within the window.

    Useful for a long-lived process that keeps one notifier (a worker, the exporter); a repeat
    inside the window is dropped silently, a failed send is forgotten so the next one retries.
    """

    def __init__(self, inner: Notifier, window: DedupeWindow) -> None:
        self.inner = inner
        self.window = window
        self.name = inner.name

    def send(self, alert: Alert) -> None:
        key = f"{self.inner.name}:{alert.dedupe_key}"
        if not self.window.admit(key):
            return
        try:
            self.inner.send(alert)
        except BaseException:
            self.window.forget(key)
            raise
