"""Starts the demo service as a real subprocess and waits until it answers /healthz."""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from canary.local.procs import ManagedProcess

START_TIMEOUT = 15.0


def demo_argv(
    name: str,
    port: int,
    *,
    host: str = "127.0.0.1",
    error_rate: float = 0.0,
    latency_ms: float = 0.0,
    latency_growth_ms_per_s: float = 0.0,
    broken_endpoint: str | None = None,
    seed: int | None = None,
    version: str | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The command line that serves the demo shop with these faults."""
    argv = [sys.executable, "-m", "canary.demo", "serve", "--host", host, "--port", str(port)]
    argv += ["--name", name, "--error-rate", repr(error_rate), "--latency-ms", repr(latency_ms)]
    argv += ["--latency-growth-ms-per-s", repr(latency_growth_ms_per_s)]
    if broken_endpoint:
        argv += ["--broken-endpoint", broken_endpoint]
    if seed is not None:
        argv += ["--seed", str(seed)]
    if version:
        argv += ["--app-version", version]
    return argv + list(extra_args)


def _healthy(url: str, pid: int | None) -> bool:
    with urllib.request.urlopen(url + "healthz", timeout=1.0) as resp:
        body = json.load(resp)
    # Whatever else listens on the port could answer; only our own process counts.
    return resp.status == 200 and body.get("status") == "ok" and body.get("pid") == pid


def start_demo_service(
    name: str,
    port: int,
    *,
    workdir: Path,
    error_rate: float = 0.0,
    latency_ms: float = 0.0,
    latency_growth_ms_per_s: float = 0.0,
    broken_endpoint: str | None = None,
    seed: int | None = None,
    version: str | None = None,
    extra_args: Sequence[str] = (),
) -> ManagedProcess:
    """Start ``name`` on 127.0.0.1:``port``; its base URL is in ``.url`` once this returns."""
    argv = demo_argv(
        name,
        port,
        error_rate=error_rate,
        latency_ms=latency_ms,
        latency_growth_ms_per_s=latency_growth_ms_per_s,
        broken_endpoint=broken_endpoint,
        seed=seed,
        version=version,
        extra_args=extra_args,
    )
    proc = ManagedProcess(f"demo-{name}", argv, log_path=Path(workdir) / f"demo-{name}-{port}.log")
    proc.url = f"http://127.0.0.1:{port}/"
    proc.start()
    try:
        proc.wait_until(lambda: _healthy(proc.url, proc.pid), START_TIMEOUT, "/healthz answer")
    except BaseException:
        proc.stop(timeout=2)
        raise
    return proc
