"""HAProxy as a supervised local child process in front of a stable and a canary (demo, tests)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from canary.errors import CanaryError
from canary.local.procs import ManagedProcess, free_port
from canary.local.proxies import find_binary, render_template, wait_frontend
from canary.routers.base import host_port
from canary.routers.haproxy import RuntimeAPI

START_TIMEOUT = 10.0
BACKEND = "app"
# sun_path holds 108 bytes; deep pytest temp directories can exceed it.
_MAX_SOCKET_PATH = 100


def haproxy_binary() -> str | None:
    return find_binary("haproxy")


def haproxy_available() -> bool:
    """Whether an ``haproxy`` executable is installed."""
    return haproxy_binary() is not None


@dataclass
class HAProxyInstance:
    """A running HAProxy: its process, frontend URL, admin socket and the router block to use."""

    process: ManagedProcess
    url: str
    socket: str
    config: Path
    router_options: dict[str, Any] = field(default_factory=dict)
    _socket_dir: Path | None = None

    def stop(self) -> None:
        self.process.stop(timeout=5)
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    def __enter__(self) -> HAProxyInstance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_haproxy(
    workdir: Path,
    stable_url: str,
    canary_url: str,
    *,
    port: int | None = None,
    canary_weight: int = 0,
) -> HAProxyInstance:
    """Start ``haproxy -db`` on 127.0.0.1:``port`` (a free one by default) with all traffic on
    stable (unless ``canary_weight``); returns once the frontend and the admin socket answer.

    The config comes from configs/haproxy/local.cfg.in; files and the log go under ``workdir``.
    """
    binary = haproxy_binary()
    if binary is None:
        raise CanaryError("haproxy is not installed (scripts/install-proxies installs it)")
    home = Path(workdir).resolve() / "haproxy"
    home.mkdir(parents=True, exist_ok=True)
    socket_dir: Path | None = None
    socket_path = home / "admin.sock"
    if len(str(socket_path)) > _MAX_SOCKET_PATH:
        socket_dir = Path(tempfile.mkdtemp(prefix="canary-haproxy-"))
        socket_path = socket_dir / "admin.sock"
    chosen = port if port is not None else free_port()
    stable_host, stable_port = host_port(stable_url, "stable url")
    canary_host, canary_port = host_port(canary_url, "canary url")
    config = home / f"haproxy-{chosen}.cfg"
    config.write_text(
        render_template(
            "haproxy/local.cfg.in",
            {
                "socket": socket_path,
                "bind": f"127.0.0.1:{chosen}",
                "backend": BACKEND,
                "stable_server": "stable",
                "canary_server": "canary",
                "stable_addr": f"{stable_host}:{stable_port}",
                "canary_addr": f"{canary_host}:{canary_port}",
                "stable_weight": 100 - canary_weight,
                "canary_weight": canary_weight,
            },
        )
    )
    check = subprocess.run(
        [binary, "-c", "-q", "-f", str(config)], capture_output=True, text=True, timeout=30
    )
    if check.returncode != 0:
        raise CanaryError(f"haproxy rejects {config}:\n{check.stdout}{check.stderr}".rstrip())
    proc = ManagedProcess(
        f"haproxy-{chosen}", [binary, "-db", "-f", str(config)], log_path=home / "haproxy.log"
    )
    url = f"http://127.0.0.1:{chosen}"
    proc.url = url
    proc.start()
    try:
        wait_frontend(proc, url + "/", START_TIMEOUT)
        api = RuntimeAPI(str(socket_path), timeout=2.0)
        # Another HAProxy could own the port; only the one whose socket reports our pid counts.
        proc.wait_until(
            lambda: f"\nPid: {proc.pid}\n" in api("show info"), START_TIMEOUT, "admin socket"
        )
    except BaseException:
        proc.stop(timeout=3)
        if socket_dir is not None:
            shutil.rmtree(socket_dir, ignore_errors=True)
        raise
    return HAProxyInstance(
        process=proc,
        url=url,
        socket=str(socket_path),
        config=config,
        router_options={
            "socket": str(socket_path),
            "backend": BACKEND,
            "stable_server": "stable",
            "canary_server": "canary",
        },
        _socket_dir=socket_dir,
    )
