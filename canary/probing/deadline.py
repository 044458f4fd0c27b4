"""A hard deadline over one HTTP exchange (connect, TLS, request, status line, headers, body).

A socket timeout bounds each read, and a server that drips one byte at a time restarts it with
every byte: the exchange, and the worker thread running it, could last forever. Here every
exchange registers its deadline with one watchdog thread per process; when a deadline passes,
the watchdog shuts the exchange's socket down, which ends the read blocked on it at once. The
connection and response classes below (used by ``fastpath.ProbeAdapter``'s pools) tell the
exchange which socket it is on, whether that connection was reused, and which part of the
answer it is reading, so a stalled exchange fails saying where it stalled.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

# Where an exchange can be: the order is the order of an HTTP/1.1 exchange.
CONNECT, TLS, REQUEST, STATUS, HEADERS, BODY = (
    "connect",
    "TLS handshake",
    "request",
    "status line",
    "headers",
    "body",
)


class Exchange:
    """One request and its answer, bounded by ``deadline`` (a ``time.monotonic`` instant)."""

    __slots__ = (
        "answered",
        "deadline",
        "done",
        "expired",
        "fresh",
        "lock",
        "phase",
        "reused",
        "sock",
        "stalled",
        "tracked",
    )

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.phase = CONNECT
        self.stalled: str | None = None  # the phase when the deadline passed
        self.sock: socket.socket | None = None
        self.reused = False  # the connection had already carried a request
        self.answered = False  # a status line arrived
        self.fresh = False  # the next request must go out on a new connection
        self.expired = False
        self.done = False
        self.tracked = False  # a connection of ours reports its progress
        self.lock = threading.Lock()

    def attach(self, sock: socket.socket) -> None:
        with self.lock:
            self.sock = sock
            late = self.expired and not self.done
        if late:
            _shut(sock)

    def expire(self) -> None:
        with self.lock:
            if self.done or self.expired:
                return
            self.expired = True
            self.stalled = self.phase
            sock = self.sock
        if sock is not None:
            _shut(sock)

    def finish(self) -> None:
        with self.lock:
            self.done = True
            self.sock = None  # the watchdog may hold this exchange until its deadline


def _shut(sock: socket.socket) -> None:
    # The plain socket's shutdown, also for an SSLSocket: its own would drop the TLS state under
    # the thread reading it. An OSError means it is closed already: nothing is blocked on it.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watchdog:
    """Expires exchanges whose deadline passed; one thread, started when first needed."""

    def __init__(self) -> None:
        self.cv = threading.Condition()
        self.heap: list[tuple[float, int, Exchange]] = []
        self.order = itertools.count()
        self.thread: threading.Thread | None = None

    def watch(self, ex: Exchange) -> None:
        with self.cv:
            heapq.heappush(self.heap, (ex.deadline, next(self.order), ex))
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(
                    target=self._run, name="probe-deadlines", daemon=True
                )
                self.thread.start()
            elif self.heap[0][2] is ex:
                self.cv.notify()

    def _run(self) -> None:
        while True:
            with self.cv:
                while not self.heap:
                    self.cv.wait()
                deadline, _, ex = self.heap[0]
                if not ex.done:
                    wait = deadline - time.monotonic()
                    if wait > 0:
                        self.cv.wait(wait)
                        continue
                heapq.heappop(self.heap)
            ex.expire()


_watchdog = _Watchdog()


def _after_fork() -> None:
    # A forked child (a prefork Celery worker) has no watchdog thread, and maybe a held lock.
    global _watchdog
    _watchdog = _Watchdog()


os.register_at_fork(after_in_child=_after_fork)
_local = threading.local()


def current() -> Exchange | None:
    """The exchange this thread is running, if any."""
    return getattr(_local, "exchange", None)


@contextmanager
def bounded(timeout: float) -> Iterator[Exchange]:
    """Run the exchange in the ``with`` block under a hard deadline ``timeout`` seconds away."""
    ex = Exchange(time.monotonic() + timeout)
    _local.exchange = ex
    _watchdog.watch(ex)
    try:
        yield ex
    finally:
        ex.finish()
        _local.exchange = None


class _PhasedResponse(http.client.HTTPResponse):
    """http.client's response, telling the exchange when the status line and headers are in."""

    def _read_status(self) -> Any:
        ex = current()
        if ex is not None:
            ex.phase = STATUS
        status = super()._read_status()  # type: ignore[misc]
        if ex is not None:
            ex.phase, ex.answered = HEADERS, True
        return status

    def begin(self) -> None:
        super().begin()
        ex = current()
        if ex is not None:
            ex.phase = BODY


class _Tracked:
    """Mixed into urllib3's connections: report the socket, reuse and phase to the exchange."""

    response_class: Any = _PhasedResponse
    sock: socket.socket | None
    _new_socket = False  # the socket has not carried a request yet

    def _new_conn(self) -> socket.socket:
        ex = current()
        if ex is not None:
            ex.tracked, ex.phase = True, CONNECT
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        self._new_socket = True
        if ex is not None:
            ex.attach(sock)
            ex.phase = TLS if isinstance(self, HTTPSConnection) else REQUEST
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        ex = current()
        if ex is not None:
            if ex.fresh and self.sock is not None and not self._new_socket:
                self.close()  # type: ignore[attr-defined]
            ex.reused = self.sock is not None and not self._new_socket
            if self.sock is not None:
                ex.attach(self.sock)
            ex.tracked, ex.phase, ex.answered = True, REQUEST, False
        try:
            super().request(*args, **kwargs)  # type: ignore[misc]
        finally:
            self._new_socket = False


class TrackedHTTPConnection(_Tracked, HTTPConnection):
    pass


class TrackedHTTPSConnection(_Tracked, HTTPSConnection):
    pass


class TrackedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = TrackedHTTPConnection


class TrackedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = TrackedHTTPSConnection


POOL_CLASSES: dict[str, type[HTTPConnectionPool]] = {
    "http": TrackedHTTPConnectionPool,
    "https": TrackedHTTPSConnectionPool,
}
