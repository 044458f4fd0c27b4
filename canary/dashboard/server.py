"""Serving the dashboard with uvicorn on a socket we bind ourselves (clear errors, port 0 works)."""

from __future__ import annotations

import contextlib
import signal
import socket
from collections.abc import Iterator
from types import FrameType

import uvicorn

from canary.dashboard.app import create_app
from canary.dashboard.auth import Credentials
from canary.errors import CanaryError
from canary.store import Store


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or a CanaryError that names the address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CanaryError(f"dashboard: cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn re-raises the signal that stopped it; a stop on request is a clean exit here."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        def stop(signum: int, frame: FrameType | None) -> None:
            self.should_exit = True

        previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def serve(url: str, store: Store, credentials: Credentials, sock: socket.socket) -> None:
    """Serve until SIGINT or SIGTERM; open event streams are closed on the way out."""
    app = create_app(url, store, credentials)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=3
    )
    _Server(config).run(sockets=[sock])
