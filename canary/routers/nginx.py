"""The nginx router: a weighted upstream file rewritten atomically, checked, then reloaded."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from canary.errors import RouterError
from canary.local.procs import pid_alive
from canary.plugins import Options, parse_options
from canary.routers.base import RouteContext, check_weight, host_port

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_SERVER = re.compile(r"^\s*server\s+(\S+)((?:\s+[^;\s]+)*)\s*;", re.MULTILINE)
_OUTPUT = 2000


def render_upstream(
    upstream: str,
    stable: str,
    canary: str,
    weight: int,
    server_params: str = "",
    comment: str = "",
) -> str:
    """The ``upstream`` block sending ``weight`` % to ``canary`` and the rest to ``stable``.

    nginx refuses ``weight=0``, so a server that gets nothing is kept but marked ``down``
    (keeping it makes the file's shape the same at every step, and verifiable).
    """
    extra = f" {server_params.strip()}" if server_params.strip() else ""

    def line(address: str, w: int) -> str:
        return f"    server {address} {'down' if w == 0 else f'weight={w}'}{extra};"

    head = f"# {comment}\n" if comment else ""
    return (
        f"{head}# Written by canary's nginx router; it is rewritten at every step.\n"
        f"upstream {upstream} {{\n"
        f"{line(stable, 100 - weight)}\n"
        f"{line(canary, weight)}\n"
        "}\n"
    )


def parse_upstream(text: str, upstream: str) -> dict[str, int]:
    """Address → weight in the ``upstream`` block of ``text`` (``down`` counts as 0)."""
    match = re.search(
        r"upstream\s+" + re.escape(upstream) + r"\s*\{(?P<body>[^}]*)\}", text, re.DOTALL
    )
    if match is None:
        raise RouterError(f"nginx: no 'upstream {upstream} {{...}}' block in the upstream file")
    servers: dict[str, int] = {}
    for address, params in _SERVER.findall(match.group("body")):
        words = params.split()
        weight = 1  # nginx's default
        for word in words:
            if word.startswith("weight="):
                try:
                    weight = int(word.removeprefix("weight="))
                except ValueError:
                    raise RouterError(f"nginx: bad weight in 'server {address}{params}'") from None
        servers[address] = 0 if "down" in words else weight
    return servers


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that nginx never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class NginxOptions(Options):
    """The ``router:`` block of ``type: nginx``."""

    upstream_file: str
    conf: str = "/etc/nginx/nginx.conf"
    upstream: str = "canary_app"
    stable: str | None = None
    canary: str | None = None
    nginx: str = "nginx"
    prefix: str | None = None
    pid_file: str | None = None
    server_params: str = ""
    timeout: float = Field(default=10.0, gt=0)

    @field_validator("upstream")
    @classmethod
    def _upstream(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"upstream name {v!r} is not a plain name")
        return v

    @field_validator("server_params")
    @classmethod
    def _params(cls, v: str) -> str:
        if ";" in v or "{" in v or "}" in v:
            raise ValueError("must be parameters only (no ; { })")
        return v


class NginxRouter:
    """Writes ``upstream_file``, runs ``nginx -t``, then reloads nginx (SIGHUP or ``-s reload``).

    ``stable``/``canary`` are the servers' ``host:port`` (default: taken from the rollout's
    stable and canary URLs). With ``pid_file`` the master is signalled directly and the router
    waits until every old worker has exited, so when it returns nginx serves the new weights.
    A file that nginx rejects is put back as it was before RouterError is raised.
    """

    name = "nginx"

    Options = NginxOptions

    def __init__(self, **options: Any) -> None:
        o = parse_options(NginxOptions, options, "router nginx")
        self.upstream_file = Path(o.upstream_file)
        self.conf = o.conf
        self.upstream = o.upstream
        self.stable = o.stable
        self.canary = o.canary
        self.nginx = o.nginx
        self.prefix = o.prefix
        self.pid_file = Path(o.pid_file) if o.pid_file else None
        self.server_params = o.server_params
        self.timeout = o.timeout
        self.last_output: str | None = None

    # --- helpers ------------------------------------------------------------------------------

    def _addresses(self, ctx: RouteContext) -> tuple[str, str]:
        stable = self.stable or _address(ctx.stable.get("url"), "stable url")
        canary = self.canary or _address(ctx.canary.get("url"), "canary url")
        if stable == canary:
            raise RouterError(f"nginx: stable and canary are the same server ({stable})")
        return stable, canary

    def _nginx(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [self.nginx, "-e", "stderr", "-c", self.conf]
        if self.prefix:
            argv += ["-p", self.prefix]
        argv += list(args)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise RouterError(
                f"nginx: {' '.join(argv)} took more than {self.timeout:g} s"
            ) from None
        except OSError as exc:
            raise RouterError(f"nginx: cannot run {self.nginx!r}: {exc.strerror or exc}") from None
        self.last_output = (done.stdout + done.stderr).strip()[-_OUTPUT:] or None
        return done

    def _master_pid(self) -> int | None:
        if self.pid_file is None:
            return None
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            raise RouterError(f"nginx: cannot read the master pid from {self.pid_file}") from None

    def _reload(self) -> None:
        pid = self._master_pid()
        if pid is None:
            done = self._nginx("-s", "reload")
            if done.returncode != 0:
                raise RouterError(f"nginx: reload failed: {self.last_output or done.returncode}")
            return
        before = _children(pid)
        try:
            os.kill(pid, signal.SIGHUP)
        except OSError as exc:
            raise RouterError(f"nginx: cannot signal master pid {pid}: {exc.strerror}") from None
        if before is not None:
            self._wait_workers_replaced(pid, before)

    def _wait_workers_replaced(self, pid: int, before: set[int]) -> None:
        # Old workers finish their requests and exit; until then some traffic uses old weights.
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            now = _children(pid)
            if now is None:
                raise RouterError(f"nginx: master pid {pid} vanished during reload")
            if now and not (now & before):
                return
            time.sleep(0.02)
        raise RouterError(
            f"nginx: old workers of master {pid} still running {self.timeout:g} s after reload"
        )

    def _apply(self, weight: int, ctx: RouteContext) -> None:
        check_weight(weight)
        stable, canary = self._addresses(ctx)
        text = render_upstream(
            self.upstream,
            stable,
            canary,
            weight,
            self.server_params,
            f"rollout {ctx.rollout_id} step {ctx.step}: canary {weight}%",
        )
        try:
            previous: str | None = self.upstream_file.read_text()
        except FileNotFoundError:
            previous = None
        except OSError as exc:
            raise RouterError(f"nginx: cannot read {self.upstream_file}: {exc.strerror}") from None
        try:
            write_atomically(self.upstream_file, text)
        except OSError as exc:
            raise RouterError(f"nginx: cannot write {self.upstream_file}: {exc.strerror}") from None
        done = self._nginx("-t")
        if done.returncode != 0:
            self._restore(previous)
            raise RouterError(
                f"nginx -t rejects the configuration with the new upstream file "
                f"(previous file restored): {self.last_output}"
            )
        self._reload()
        log.info("nginx upstream %s: canary %d%%, stable %d%%", self.upstream, weight, 100 - weight)

    def _restore(self, previous: str | None) -> None:
        with contextlib.suppress(OSError):
            if previous is None:
                self.upstream_file.unlink()
            else:
                write_atomically(self.upstream_file, previous)

    # --- the Router protocol ------------------------------------------------------------------

    def set_weight(self, weight: int, ctx: RouteContext) -> None:
        self._apply(weight, ctx)

    def verify_weight(self, weight: int, ctx: RouteContext) -> bool | None:
        check_weight(weight)
        stable, canary = self._addresses(ctx)
        try:
            text = self.upstream_file.read_text()
        except OSError as exc:
            raise RouterError(f"nginx: cannot read {self.upstream_file}: {exc.strerror}") from None
        live = parse_upstream(text, self.upstream)
        expected = {stable: 100 - weight, canary: weight}
        if live != expected:
            log.warning("nginx upstream %s is %s, expected %s", self.upstream, live, expected)
            return False
        if self.pid_file is None:
            return True
        # No master, or a master without workers, serves nothing whatever the file says.
        try:
            pid = self._master_pid()
        except RouterError:
            return False  # nginx removes its pid file when it stops
        return pid is None or (pid_alive(pid) and _children(pid) != set())

    def promote(self, ctx: RouteContext) -> None:
        self._apply(100, ctx)

    def rollback(self, ctx: RouteContext) -> None:
        self._apply(0, ctx)


def _address(url: object, what: str) -> str:
    if not isinstance(url, str) or not url:
        raise RouterError(f"nginx: no {what} to route to; set the router's stable/canary options")
    host, port = host_port(url, what)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _children(pid: int) -> set[int] | None:
    """Child pids of ``pid`` (Linux /proc), None where that cannot be read."""
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        found: set[int] = set()
        for task in tasks:
            found.update(int(c) for c in (task / "children").read_text().split())
        return found
    except (OSError, ValueError):
        return None
