"""NGINX as a supervised local child process in front of a stable and a canary (demo, tests)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from canary.errors import CanaryError
from canary.local.procs import ManagedProcess, free_port
from canary.local.proxies import find_binary, render_template, wait_frontend
from canary.routers.base import host_port
from canary.routers.nginx import render_upstream, write_atomically

START_TIMEOUT = 10.0
UPSTREAM = "canary_app"
_TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def nginx_binary() -> str | None:
    return find_binary("nginx")


def nginx_available() -> bool:
    """Whether an ``nginx`` executable is installed."""
    return nginx_binary() is not None


@dataclass
class NginxInstance:
    """A running NGINX master: process, frontend URL, files, and the router block to use."""

    process: ManagedProcess
    url: str
    conf: Path
    upstream_file: Path
    pid_file: Path
    router_options: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> None:
        # SIGTERM to the group: nginx's fast shutdown, workers included.
        self.process.stop(timeout=5)

    def __enter__(self) -> NginxInstance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_nginx(
    workdir: Path,
    stable_url: str,
    canary_url: str,
    *,
    port: int | None = None,
    canary_weight: int = 0,
) -> NginxInstance:
    """Start an nginx master (``daemon off``) on 127.0.0.1:``port`` with its prefix under
    ``workdir``, all traffic on stable (unless ``canary_weight``); returns once it answers.
    """
    binary = nginx_binary()
    if binary is None:
        raise CanaryError("nginx is not installed (scripts/install-proxies installs it)")
    chosen = port if port is not None else free_port()
    prefix = Path(workdir).resolve() / f"nginx-{chosen}"
    for name in _TEMP_DIRS:
        (prefix / "tmp" / name).mkdir(parents=True, exist_ok=True)
    (prefix / "logs").mkdir(exist_ok=True)
    stable_host, stable_port = host_port(stable_url, "stable url")
    canary_host, canary_port = host_port(canary_url, "canary url")
    stable, canary = f"{stable_host}:{stable_port}", f"{canary_host}:{canary_port}"
    upstream_file = prefix / "upstream.conf"
    write_atomically(
        upstream_file, render_upstream(UPSTREAM, stable, canary, canary_weight, comment="initial")
    )
    conf, pid_file, error_log = (
        prefix / "nginx.conf",
        prefix / "nginx.pid",
        prefix / "logs/error.log",
    )
    conf.write_text(
        render_template(
            "nginx/local.conf.in",
            {
                # As root the workers would otherwise run as nobody, who cannot use our prefix.
                "user_directive": "user root;" if os.geteuid() == 0 else "",
                "pid_file": pid_file,
                "error_log": error_log,
                "prefix": prefix,
                "upstream_file": upstream_file,
                "upstream": UPSTREAM,
                "port": chosen,
            },
        )
    )
    base = [binary, "-e", str(error_log), "-p", str(prefix), "-c", str(conf)]
    check = subprocess.run([*base, "-t", "-q"], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        raise CanaryError(f"nginx rejects {conf}:\n{check.stdout}{check.stderr}".rstrip())
    # Its output and nginx's error log share one file, so a failure shows nginx's own words.
    proc = ManagedProcess(f"nginx-{chosen}", [*base, "-g", "daemon off;"], log_path=error_log)
    url = f"http://127.0.0.1:{chosen}"
    proc.url = url
    proc.start()
    try:
        # Another nginx could own the port; only the master whose pid file names it counts.
        proc.wait_until(
            lambda: pid_file.read_text().strip() == str(proc.pid), START_TIMEOUT, "pid file"
        )
        wait_frontend(proc, url + "/", START_TIMEOUT)
    except BaseException:
        proc.stop(timeout=3)
        raise
    return NginxInstance(
        process=proc,
        url=url,
        conf=conf,
        upstream_file=upstream_file,
        pid_file=pid_file,
        router_options={
            "upstream_file": str(upstream_file),
            "upstream": UPSTREAM,
            "stable": stable,
            "canary": canary,
            "conf": str(conf),
            "prefix": str(prefix),
            "pid_file": str(pid_file),
            "nginx": binary,
        },
    )
