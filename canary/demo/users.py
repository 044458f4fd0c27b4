"""The demo's users: a steady stream of requests through the router, and who answered them."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import requests

from canary.demo.faults import USER_HEADER

WINDOW_S = 2.0
PATH = "/api/products"


class Users:
    """``rate`` requests per second to ``pick()`` (the router's URL), paced, on a few threads.

    Each answer is tallied by the X-Canary-Version header that names the serving instance, so
    ``canary_share()`` says what share of the users the canary served over the last seconds.
    """

    def __init__(self, pick: Callable[[], str], *, rate: float = 20.0, workers: int = 16) -> None:
        self.pick = pick
        self.rate = rate
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="demo-user")
        self._answers: deque[tuple[float, str]] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-users", daemon=True)

    def start(self) -> Users:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Users:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            due += 1.0 / self.rate
            with contextlib.suppress(RuntimeError):  # the pool shut down under us
                self._pool.submit(self._one)
            self._stop.wait(max(0.0, due - time.monotonic()))
            # Behind schedule (a busy machine): skip the missed sends rather than burst.
            due = max(due, time.monotonic() - 1.0)

    def _one(self) -> None:
        served = "error"
        try:
            # A new connection each time, so that the router balances every request.
            r = requests.get(
                self.pick() + PATH,
                headers={USER_HEADER: "1", "Connection": "close"},
                timeout=3,
            )
            served = r.headers.get("X-Canary-Version", "unknown")
        except requests.RequestException:
            pass
        now = time.monotonic()
        with self._lock:
            self._answers.append((now, served))
            while self._answers and self._answers[0][0] < now - WINDOW_S:
                self._answers.popleft()

    def canary_share(self) -> tuple[float, int]:
        """(share of answers from the canary, answers) over the last WINDOW_S seconds."""
        now = time.monotonic()
        with self._lock:
            recent = [s for t, s in self._answers if t >= now - WINDOW_S]
        if not recent:
            return 0.0, 0
        return sum(1 for s in recent if s.endswith("canary")) / len(recent), len(recent)
