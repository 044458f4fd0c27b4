"""A hard deadline over one HTTP exchange (DNS, connect, TLS, request, status line, headers, body).

A socket timeout bounds each read, and a server that drips one byte at a time restarts it with
every byte: the exchange, and the worker thread running it, could last forever. Here every
exchange registers its deadline with one watchdog thread per process; when a deadline passes,
the watchdog shuts the exchange's socket down, which ends the read blocked on it at once. The
connection and response classes below (used by ``fastpath.ProbeAdapter``'s pools) tell the
exchange which socket it is on, whether that connection was reused, and which part of the
answer it is reading, so a stalled exchange fails saying where it stalled. Name resolution
cannot be interrupted (``getaddrinfo`` blocks in libc), so it runs on a small pool of resolver
threads; the exchange waits for it only until its deadline.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import heapq
import http.client
import ipaddress
import itertools
import os
import queue
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family

# Where an exchange can be: the order is the order of an HTTP/1.1 exchange.
DNS, CONNECT, TLS, REQUEST, STATUS, HEADERS, BODY = (
    "DNS",
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


class _Resolver:
    """getaddrinfo on daemon threads: a name server that never answers holds one of them until
    libc gives up (timeout x attempts in resolv.conf), never a probe past its deadline, nor the
    process at exit (a ThreadPoolExecutor's threads are joined then)."""

    THREADS = 16

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], tuple[Any, ...]]]
        self.jobs = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def submit(self, *args: Any) -> concurrent.futures.Future[Any]:
        job: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.jobs.put((job, args))
        with self.lock:
            self.threads = [t for t in self.threads if t.is_alive()]
            if len(self.threads) < self.THREADS:
                t = threading.Thread(target=self._run, name="probe-dns", daemon=True)
                t.start()
                self.threads.append(t)
        return job

    def _run(self) -> None:
        while True:
            job, args = self.jobs.get()
            if not job.set_running_or_notify_cancel():
                continue
            try:
                job.set_result(socket.getaddrinfo(*args))
            except BaseException as exc:
                job.set_exception(exc)


_resolver = _Resolver()


def _after_fork() -> None:
    # A forked child (a prefork Celery worker) has no watchdog or resolver threads, and maybe
    # a held lock.
    global _watchdog, _resolver
    _watchdog = _Watchdog()
    _resolver = _Resolver()


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

    _dns_host: str
    port: int

    def _new_conn(self) -> socket.socket:
        ex = current()
        if ex is None or _is_address(self._dns_host):
            if ex is not None:
                ex.tracked, ex.phase = True, CONNECT
            sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        else:
            sock = self._connect_resolved(ex)
        self._new_socket = True
        if ex is not None:
            ex.attach(sock)
            ex.phase = TLS if isinstance(self, HTTPSConnection) else REQUEST
        return sock

    def _connect_resolved(self, ex: Exchange) -> socket.socket:
        """Resolve within the exchange's deadline, then connect to each address in turn (as
        urllib3 does with the name): the host name, for TLS and Host, is left as it was."""
        name = self._dns_host
        ex.tracked, ex.phase = True, DNS
        addresses = _resolve(self, ex, name)
        ex.phase = CONNECT
        last: Exception | None = None
        for address in addresses:
            self._dns_host = address
            try:
                sock: socket.socket = super()._new_conn()  # type: ignore[misc]
            except NewConnectionError as exc:
                last = exc
                if ex.expired:
                    break
                continue
            finally:
                self._dns_host = name
            return sock
        assert last is not None, "getaddrinfo answers at least one address or raises"
        raise last

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


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _resolve(conn: Any, ex: Exchange, name: str) -> list[str]:
    """The addresses of ``name``, in getaddrinfo's order, or the failure urllib3 would raise."""
    job = _resolver.submit(name, conn.port, allowed_gai_family(), socket.SOCK_STREAM)
    try:
        infos = job.result(timeout=max(0.0, ex.deadline - time.monotonic()))
    except concurrent.futures.TimeoutError:
        with ex.lock:
            if not ex.expired:
                ex.expired, ex.stalled = True, DNS
        raise NewConnectionError(conn, f"no DNS answer for {name}") from None
    except socket.gaierror as exc:
        raise NameResolutionError(name, conn, exc) from exc
    out: list[str] = []
    for *_, sockaddr in infos:
        if sockaddr[0] not in out:
            out.append(str(sockaddr[0]))
    return out


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
