"""Free TCP ports for local servers: never the same one to two processes of this machine.

A port found free is only free until someone binds it, and the servers we start bind it
seconds later, in another process. Two processes asking at once (pytest-xdist workers, a test
and the `canary run` it started, two checkouts' suites side by side) used to be able to get the
same one, and a client's outgoing connection could take an ephemeral one meanwhile. So every
port handed out is claimed for CLAIM_S in a registry shared by this user's processes (a JSON
file under an exclusive lock), and with ``CANARY_PORT_RANGE=LOW-HIGH`` ports come from that
range, which the test suite sets per xdist worker below the kernel's ephemeral range.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from canary.errors import CanaryError

__all__ = ["CLAIM_S", "free_port", "port_range"]

# Long enough for a server started on the port to have bound it, even on a busy machine.
CLAIM_S = 120.0
_TRIES = 200


def port_range() -> tuple[int, int] | None:
    """CANARY_PORT_RANGE as (low, high), inclusive; None when unset."""
    raw = os.environ.get("CANARY_PORT_RANGE", "").strip()
    if not raw:
        return None
    low, sep, high = raw.partition("-")
    try:
        lo, hi = int(low), int(high)
    except ValueError:
        lo, hi = 0, -1
    if not sep or not 1024 < lo <= hi < 65536:
        raise CanaryError(f"CANARY_PORT_RANGE={raw!r} is not LOW-HIGH within 1025-65535")
    return lo, hi


def _registry_dir() -> Path | None:
    folder = Path(tempfile.gettempdir()) / f"canary-ports-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        # Another user's folder of that name is not ours to trust or write.
        return folder if folder.stat().st_uid == os.getuid() else None
    except OSError:
        return None


@contextlib.contextmanager
def _claims() -> Iterator[dict[str, float]]:
    """The live claims (port → until), under the registry's lock; changes are written back.

    Without a usable registry (no writable temp folder) an empty dict: ports are then only as
    safe as the kernel's choice.
    """
    folder = _registry_dir()
    if folder is None:
        yield {}
        return
    with open(folder / "claims.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = folder / "claims.json"
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            stored = {}
        now = time.time()
        claims = {p: float(t) for p, t in dict(stored).items() if float(t) > now}
        yield claims
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(claims))
        os.replace(tmp, path)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _kernel_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on and no other caller was given lately.

    From CANARY_PORT_RANGE when set (the kernel's choice once that range is used up), else the
    kernel's choice; claimed for CLAIM_S either way, so bind it within that time.
    """
    span = port_range()
    with _claims() as claims:
        for attempt in range(_TRIES):
            # Half the tries in the range; then the kernel's choice rather than failing.
            if span is not None and attempt < _TRIES // 2:
                port = random.randint(*span)
            else:
                port = _kernel_port()
            if str(port) in claims or not _bindable(port):
                continue
            claims[str(port)] = time.time() + CLAIM_S
            return port
    raise CanaryError("no free TCP port on 127.0.0.1 (every one tried is in use or claimed)")
