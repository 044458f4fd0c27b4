"""The haproxy router: server weights changed live through HAProxy's Runtime API, no reload."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from canary.errors import ConfigError, RouterError
from canary.plugins import Options, parse_options
from canary.routers.base import RouteContext, check_weight

log = logging.getLogger(__name__)

ZeroState = Literal["ready", "drain", "maint"]
_MAX_REPLY = 1 << 20


@dataclass(frozen=True, slots=True)
class ServerState:
    """One server as ``show servers state`` reports it."""

    name: str
    weight: int
    admin_state: int  # bit field: 0 = ready; maintenance and drain flags otherwise

    @property
    def ready(self) -> bool:
        return self.admin_state == 0


class RuntimeAPI:
    """One-command-per-connection client of HAProxy's stats socket (unix path or host:port)."""

    def __init__(self, address: str, timeout: float = 5.0) -> None:
        self.address = address
        self.timeout = timeout
        self._family, self._target = parse_socket_address(address)

    def __call__(self, command: str) -> str:
        """Send one command; returns HAProxy's reply. RouterError when the socket fails."""
        try:
            with socket.socket(self._family, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self._target)
                sock.sendall(command.encode() + b"\n")
                chunks: list[bytes] = []
                size = 0
                # Without "prompt" mode HAProxy answers one command and closes the connection.
                while size < _MAX_REPLY:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
        except TimeoutError:
            raise RouterError(
                f"haproxy runtime API at {self.address}: no reply to {command!r} "
                f"within {self.timeout:g} s"
            ) from None
        except OSError as exc:
            raise RouterError(
                f"haproxy runtime API at {self.address} unreachable ({exc.strerror or exc}); "
                "is HAProxy running with 'stats socket ... level admin'?"
            ) from None
        return b"".join(chunks).decode("utf-8", "replace")

    def command(self, command: str) -> None:
        """Run a command that answers nothing on success; its reply otherwise is the error."""
        reply = self(command).strip()
        if reply:
            raise RouterError(f"haproxy refused {command!r}: {reply}")


def parse_socket_address(address: str) -> tuple[socket.AddressFamily, Any]:
    """``/run/haproxy.sock``, ``unix:/path``, ``host:port`` or ``tcp://host:port``."""
    text = address.strip()
    for prefix in ("unix://", "unix:"):
        if text.startswith(prefix):
            return socket.AF_UNIX, text[len(prefix) :]
    if text.startswith("/") or text.startswith("."):
        return socket.AF_UNIX, text
    text = text.removeprefix("tcp://").removeprefix("ipv4@")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(
            f"router haproxy: socket {address!r} is neither a unix socket path nor host:port"
        )
    return socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET, (
        host.strip("[]"),
        int(port),
    )


def parse_servers_state(reply: str, backend: str) -> dict[str, ServerState]:
    """Servers of ``backend`` from a ``show servers state`` reply, by name.

    Columns are found by the header's names, so versions that add columns still parse.
    """
    header: list[str] | None = None
    servers: dict[str, ServerState] = {}
    for line in reply.splitlines():
        if line.startswith("#"):
            header = line.lstrip("# ").split()
            continue
        fields = line.split()
        if header is None or len(fields) < len(header) - 1 or not fields:
            continue  # the format version line, blanks, or something we do not understand
        row = dict(zip(header, fields, strict=False))
        if row.get("be_name") != backend:
            continue
        try:
            servers[row["srv_name"]] = ServerState(
                row["srv_name"], int(row["srv_uweight"]), int(row["srv_admin_state"])
            )
        except (KeyError, ValueError):
            raise RouterError(f"haproxy: cannot read 'show servers state' line {line!r}") from None
    return servers


class HAProxyOptions(Options):
    """The ``router:`` block of ``type: haproxy``."""

    socket: str = "/run/haproxy/admin.sock"
    backend: str = "app"
    stable_server: str = "stable"
    canary_server: str = "canary"
    zero_state: ZeroState = "ready"
    timeout: float = Field(default=5.0, gt=0)

    @field_validator("socket")
    @classmethod
    def _socket(cls, v: str) -> str:
        try:
            parse_socket_address(v)
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("router haproxy: socket ")) from None
        return v

    @model_validator(mode="after")
    def _servers(self) -> HAProxyOptions:
        if self.stable_server == self.canary_server:
            raise ValueError("stable_server and canary_server must differ")
        return self


class HAProxyRouter:
    """Canary server gets weight w, stable 100 - w (HAProxy's weights are relative: w% exactly).

    A server whose weight is 0 is put in ``zero_state`` (``ready`` keeps it as is: weight 0
    alone stops new traffic; ``drain`` or ``maint`` also mark it in HAProxy's stats), and any
    server given traffic is set back to ``ready`` first, so a previous rollback's maint is undone.
    """

    name = "haproxy"

    Options = HAProxyOptions

    def __init__(self, **options: Any) -> None:
        o = parse_options(HAProxyOptions, options, "router haproxy")
        self.socket = o.socket
        self.backend = o.backend
        self.stable_server = o.stable_server
        self.canary_server = o.canary_server
        self.zero_state: ZeroState = o.zero_state
        self.api = RuntimeAPI(o.socket, o.timeout)

    def _targets(self, weight: int) -> dict[str, int]:
        return {self.stable_server: 100 - weight, self.canary_server: weight}

    def _apply(self, weight: int) -> None:
        targets = self._targets(check_weight(weight))
        # The server gaining traffic goes first, so no instant has both at weight 0 (a 503).
        for server, w in sorted(targets.items(), key=lambda item: -item[1]):
            path = f"{self.backend}/{server}"
            if w > 0:
                self.api.command(f"set server {path} state ready")
            self.api.command(f"set weight {path} {w}")
            if w == 0 and self.zero_state != "ready":
                self.api.command(f"set server {path} state {self.zero_state}")
        log.info("haproxy %s: canary %d%%, stable %d%%", self.backend, weight, 100 - weight)

    def servers(self) -> dict[str, ServerState]:
        """The live state of our two servers; RouterError if either is missing."""
        reply = self.api(f"show servers state {self.backend}")
        if "Can't find backend" in reply or "No such backend" in reply:
            raise RouterError(f"haproxy has no backend {self.backend!r}")
        found = parse_servers_state(reply, self.backend)
        missing = [s for s in (self.stable_server, self.canary_server) if s not in found]
        if missing:
            raise RouterError(
                f"haproxy backend {self.backend!r} has no server {', '.join(map(repr, missing))}"
                f" (it has {', '.join(sorted(found)) or 'none'})"
            )
        return found

    def set_weight(self, weight: int, ctx: RouteContext) -> None:
        self._apply(weight)

    def verify_weight(self, weight: int, ctx: RouteContext) -> bool | None:
        live = self.servers()
        for server, w in self._targets(check_weight(weight)).items():
            state = live[server]
            if state.weight != w or (w > 0 and not state.ready):
                log.warning(
                    "haproxy %s/%s: weight %d (admin state %d), expected %d",
                    self.backend,
                    server,
                    state.weight,
                    state.admin_state,
                    w,
                )
                return False
        return True

    def promote(self, ctx: RouteContext) -> None:
        self._apply(100)

    def rollback(self, ctx: RouteContext) -> None:
        self._apply(0)
