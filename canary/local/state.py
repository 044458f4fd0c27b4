"""Where the background fleet lives (CANARY_HOME) and its state file: read, written 0600, removed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from canary.local.procs import pid_alive

__all__ = [
    "fleet_redis_url",
    "home",
    "local_redis_url",
    "read_state",
    "remove_state",
    "state_file",
    "write_state",
]


def home() -> Path:
    """Where the background fleet keeps its state and logs (CANARY_HOME, else ~/.canary/local)."""
    return Path(os.environ.get("CANARY_HOME") or Path.home() / ".canary" / "local")


def state_file(workdir: Path | None = None) -> Path:
    return (workdir or home()) / "state.json"


def read_state(workdir: Path | None = None) -> dict[str, Any] | None:
    """The running background fleet's state, or None when there is none (stale files ignored)."""
    path = state_file(workdir)
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if pid_alive(int(state.get("pid", 0))) else None


def write_state(workdir: Path, state: dict[str, Any]) -> None:
    """Replace the state file at once; it holds passwords, so only its owner may read it."""
    tmp = state_file(workdir).with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    tmp.touch(mode=0o600)
    tmp.write_text(json.dumps(state))
    tmp.replace(state_file(workdir))


def remove_state(workdir: Path | None = None) -> None:
    state_file(workdir).unlink(missing_ok=True)


def local_redis_url() -> str | None:
    """The Redis URL of the fleet `canary local up` started, or None when none runs."""
    state = read_state()
    return str(state["redis_url"]) if state else None


def fleet_redis_url() -> str | None:
    """The fleet every command uses: CANARY_REDIS_URL, else the `canary local up` one, else None."""
    from canary.settings import load_settings

    return load_settings().redis_url or local_redis_url()
