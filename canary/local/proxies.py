"""What the local HAProxy and NGINX launchers share: binaries, config templates and readiness checks."""

from __future__ import annotations

import os
import shutil
import string
import urllib.error
import urllib.request
from pathlib import Path

from canary.errors import CanaryError
from canary.local.procs import ManagedProcess

CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"
# sbin is often missing from a non-root PATH, and Debian installs both proxies there.
_SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def find_binary(name: str) -> str | None:
    """``name`` from PATH or the sbin directories, or None."""
    found = shutil.which(name)
    if found:
        return found
    for directory in _SBIN:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def render_template(relative: str, values: dict[str, object]) -> str:
    """``configs/<relative>`` with its ``${name}`` placeholders filled in (all must be given)."""
    path = CONFIGS_DIR / relative
    try:
        text = path.read_text()
    except OSError as exc:
        raise CanaryError(f"cannot read the config template {path}: {exc.strerror}") from None
    try:
        return string.Template(text).substitute({k: str(v) for k, v in values.items()})
    except (KeyError, ValueError) as exc:
        raise CanaryError(f"config template {path}: bad or unknown placeholder {exc}") from None


def frontend_answers(url: str) -> bool:
    """Whether something at ``url`` answers HTTP at all (any status: 503 is an answer too)."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            resp.read()
    except urllib.error.HTTPError:
        return True
    return True


def wait_frontend(proc: ManagedProcess, url: str, timeout: float) -> None:
    proc.wait_until(lambda: frontend_answers(url), timeout, f"HTTP answer from {url}")
