"""Flower for a canary fleet: started with basic auth as a child process, and readable task args."""

from __future__ import annotations

import secrets
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from canary.errors import CanaryError
from canary.local.procs import ManagedProcess, free_port

# A ceiling for a busy machine, where Flower's imports alone can take half a minute.
START_TIMEOUT = 120.0
ARGSREPR_MAX = 200
TASKS_COLUMNS = "name,args,state,received,runtime,worker,result,uuid"


def flower_argv(
    port: int, *, address: str = "127.0.0.1", app: str = "workers.app:app"
) -> list[str]:
    """Flower's command line; credentials and the broker URL are not on it (``ps`` shows it)."""
    return [
        sys.executable, "-m", "celery", "-A", app, "flower",
        f"--port={port}", f"--address={address}",
    ]  # fmt: skip


def flower_env(redis_url: str, user: str, password: str) -> dict[str, str]:
    """The environment that passes the broker and the credentials to Flower.

    Flower reads every option from ``FLOWER_<NAME>``; a multi-valued option such as basic_auth
    is split on commas, so neither part may contain one (nor the user a colon).
    """
    if not user or ":" in user or "," in user:
        raise CanaryError("the Flower user must be non-empty without ':' or ','")
    if not password or "," in password:
        raise CanaryError("the Flower password must be non-empty without ','")
    return {
        "CANARY_REDIS_URL": redis_url,
        "FLOWER_BASIC_AUTH": f"{user}:{password}",
        # Forget workers gone for 10 minutes, so a scaled-down probe pool does not linger.
        "FLOWER_PURGE_OFFLINE_WORKERS": "600",
        # Args name the rollout and its step: the column operators look for first.
        "FLOWER_TASKS_COLUMNS": TASKS_COLUMNS,
        "PYTHONUNBUFFERED": "1",
    }


def _answers_401(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1.0)
    except urllib.error.HTTPError as exc:
        return exc.code == 401
    # Anything but a 401 means auth is off: never report such a Flower as ready.
    return False


def start_flower(
    workdir: Path,
    redis_url: str,
    *,
    port: int | None = None,
    user: str = "canary",
    password: str | None = None,
    app: str = "workers.app:app",
    wait: bool = True,
) -> tuple[ManagedProcess, str, str]:
    """Start Flower on 127.0.0.1 with basic auth; returns (process, URL, password).

    The URL carries no credentials. Readiness is a 401 on /api/workers, which also proves that
    authentication is on. Without ``wait`` it returns at once, so that Flower starts beside
    other processes; wait_for_flower() then waits.
    """
    password = password or secrets.token_urlsafe(18)
    port = port or free_port()
    log_dir = Path(workdir).resolve() / "logs"
    proc = ManagedProcess(
        "flower",
        flower_argv(port, app=app),
        env=flower_env(redis_url, user, password),
        log_path=log_dir / "flower.log",
        cwd=Path(workdir).resolve(),
    )
    url = f"http://127.0.0.1:{port}"
    proc.url = url
    proc.start()
    if wait:
        wait_for_flower(proc)
    return proc, url, password


def wait_for_flower(proc: ManagedProcess) -> None:
    """Wait for a launched Flower to answer 401; CanaryError (and Flower stopped) if it does not."""
    try:
        proc.wait_until(
            lambda: _answers_401(f"{proc.url}/api/workers"), START_TIMEOUT, "401 from Flower"
        )
    except BaseException:
        proc.stop(timeout=3)
        raise


# --- readable tasks ---------------------------------------------------------------------------


def _short(text: str) -> str:
    return text if len(text) <= ARGSREPR_MAX else text[: ARGSREPR_MAX - 1] + "…"


def task_argsrepr(task: str, args: list[Any] | tuple[Any, ...]) -> str:
    """What Flower shows as a task's arguments: the rollout and where it is, not a JSON dump.

    Meant for ``apply_async(..., argsrepr=task_argsrepr(name, args))``: Flower displays
    ``argsrepr`` instead of the arguments, which for a probe batch are a long dict.
    """
    a = list(args)
    if task in ("canary.advance",) and len(a) >= 3:
        return _short(f"rollout={a[0]} step={a[1]} attempt={a[2]}")
    if task in ("canary.analyze", "canary.check") and len(a) >= 2:
        return _short(f"rollout={a[0]} window={a[1]}")
    if task == "canary.probe_batch" and a and isinstance(a[0], dict):
        b = a[0]
        keys = ("rollout_id", "window", "transaction", "batch_id", "count", "environment")
        words = [f"{k.removesuffix('_id')}={b[k]}" for k in keys if k in b]
        return _short(" ".join(words))
    if task == "canary.start_rollout" and a:
        cfg = a[0] if isinstance(a[0], dict) else {}
        rid = a[2] if len(a) > 2 else None
        versions = "{} → {}".format(
            (cfg.get("stable") or {}).get("version", "stable"),
            (cfg.get("canary") or {}).get("version", "canary"),
        )
        return _short(f"rollout={rid or cfg.get('name')} {versions}")
    if task in ("canary.pause", "canary.resume", "canary.promote", "canary.abort") and a:
        return _short(f"rollout={a[0]}")
    return _short(repr(a))
