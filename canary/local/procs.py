"""Child processes that never outlive us: start, wait for readiness, stop by process group.

Every ManagedProcess runs in its own session (so its whole process group can be signalled and a
terminal's Ctrl-C reaches only us, who stop children in order). Three layers make sure nothing is
left behind:

1. ``stop()`` / ``stop_all()``, called by context managers, ``atexit`` and a SIGTERM/SIGHUP
   handler that turns those signals into SystemExit;
2. PR_SET_PDEATHSIG (Linux): the kernel SIGKILLs a direct child when we die, even by SIGKILL;
3. a watchdog process holding the read end of a pipe: when we die for any reason the pipe hits
   EOF and the watchdog SIGKILLs every process group still registered (this also covers
   grandchildren, children started from threads, and systems without prctl). Before that it
   runs the parent's last will, if one is set (``set_last_will``): `canary run` leaves one that
   sends its rollout's traffic to stable.

Long because the three layers above only work together: split, a reader could miss the one
that keeps a child from outliving a ``kill -9``.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import IO

from canary.errors import CanaryError
from canary.local.ports import free_port

__all__ = [
    "ManagedProcess",
    "free_port",
    "install_signal_handlers",
    "pid_alive",
    "pid_running",
    "running",
    "set_last_will",
    "stop_all",
]

_PR_SET_PDEATHSIG = 1
# How long the watchdog lets a last will run before it kills what is left regardless.
LAST_WILL_TIMEOUT_S = 90
_TAIL_LINES = 40

_lock = threading.RLock()
_registry: dict[int, ManagedProcess] = {}
_owner_pid = os.getpid()
_inherited: list[object] = []


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (ours to signal or not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists; it just is not ours to signal
    return True


def pid_running(pid: int) -> bool:
    """Whether ``pid`` runs: exists and is not a zombie waiting for its parent to reap it."""
    if not pid_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True  # no /proc here: existing is all we can tell


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        prctl: Callable[..., int] = libc.prctl
        return prctl
    except (OSError, AttributeError):
        return None


# Resolved once in the parent: dlopen in a freshly forked child could deadlock on loader locks.
_prctl = _load_prctl()


def _child_setup(parent_pid: int) -> Callable[[], None]:
    def setup() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The parent may have died between fork and prctl: then nobody would ever kill us.
        if os.getppid() != parent_pid:
            os._exit(1)

    return setup


class _Watchdog:
    """One helper process per parent that kills registered process groups when the parent dies."""

    # Lines: "+ PGID" / "- PGID" (watch, forget a group), "! JSON-ARGV" / "!" (set, clear the
    # last will: a command run, before the kill, when the parent dies without clearing it).
    _SCRIPT = (
        "import json, os, signal, subprocess, sys\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "groups, will = set(), None\n"
        "for line in sys.stdin:\n"
        "    op, _, arg = line.strip().partition(' ')\n"
        "    if op == '!':\n"
        "        will = json.loads(arg) if arg else None\n"
        "    else:\n"
        "        (groups.add if op == '+' else groups.discard)(int(arg))\n"
        "if will:\n"
        "    try:\n"
        f"        subprocess.run(will, stdin=subprocess.DEVNULL, timeout={LAST_WILL_TIMEOUT_S})\n"
        "    except Exception:\n"
        "        pass\n"
        "for pgid in groups:\n"
        "    try:\n"
        "        os.killpg(pgid, signal.SIGKILL)\n"
        "    except OSError:\n"
        "        pass\n"
    )

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._stdin: IO[bytes] | None = None

    def _ensure(self) -> IO[bytes] | None:
        if self._proc is not None and self._proc.poll() is None and self._stdin is not None:
            return self._stdin
        try:
            self._proc = subprocess.Popen(
                # The trailing words only label the process for ps and pgrep.
                [sys.executable, "-c", self._SCRIPT, "canary-watchdog", str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
            )
        except OSError:
            return None
        self._stdin = self._proc.stdin
        return self._stdin

    def _send(self, line: str) -> None:
        with _lock:
            stdin = self._ensure()
            if stdin is None:
                return
            with contextlib.suppress(OSError, ValueError):
                stdin.write(line.encode())
                stdin.flush()

    def watch(self, pgid: int) -> None:
        self._send(f"+ {pgid}\n")

    def forget(self, pgid: int) -> None:
        if self._proc is not None:
            self._send(f"- {pgid}\n")

    def last_will(self, argv: list[str] | None) -> None:
        if argv is None:
            if self._proc is not None:
                self._send("!\n")
            return
        self._send(f"! {json.dumps(argv)}\n")

    def close(self) -> None:
        with _lock:
            if self._stdin is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._stdin.close()
            if self._proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(timeout=2)
            self._proc = None
            self._stdin = None


_watchdog = _Watchdog()


class ManagedProcess:
    """One child process in its own process group, with its output captured in a log file.

    ``env`` adds to (and overrides) this process's environment. Without ``log_path`` the output
    goes to a temporary file. Launchers record where the process serves in ``url``; with
    ``stop_late`` stop_all() stops it after every other process.
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        cwd: Path | None = None,
        stop_late: bool = False,
    ) -> None:
        if not argv:
            raise CanaryError(f"{name}: empty command line")
        self.name = name
        self.argv = list(argv)
        self.env = dict(env or {})
        self.cwd = cwd
        # What others depend on (Redis) is stopped by stop_all() only once the rest has gone.
        self.stop_late = stop_late
        if log_path is None:
            fd, tmp = tempfile.mkstemp(prefix=f"canary-{_safe(name)}-", suffix=".log")
            os.close(fd)
            log_path = Path(tmp)
        self.log_path = Path(log_path)
        self._url: str | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self._terminated = False
        self._stopped = False

    def __repr__(self) -> str:
        state = "alive" if self.alive else "stopped"
        return f"<ManagedProcess {self.name} pid={self.pid} {state}>"

    def __enter__(self) -> ManagedProcess:
        if self._popen is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Where the process serves, as recorded by its launcher (CanaryError if none was)."""
        if self._url is None:
            raise CanaryError(f"{self.name}: no URL recorded for this process")
        return self._url

    @url.setter
    def url(self, value: str) -> None:
        self._url = value

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen is not None else None

    def start(self) -> ManagedProcess:
        """Start the process; raises CanaryError when it cannot be executed."""
        if self.alive:
            raise CanaryError(f"{self.name}: already running (pid {self.pid})")
        install_signal_handlers()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        with _lock, open(self.log_path, "ab") as log:
            self._log_offset = log.tell()
            try:
                self._popen = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=str(self.cwd) if self.cwd else None,
                    start_new_session=True,
                    close_fds=True,
                    # PDEATHSIG fires when the forking *thread* exits, so only the main thread
                    # may use it; children started elsewhere rely on the watchdog.
                    preexec_fn=_child_setup(os.getpid()) if _in_main_thread() else None,
                )
            except OSError as exc:
                raise CanaryError(f"{self.name}: cannot start {self.argv[0]!r}: {exc}") from exc
            self._terminated = self._stopped = False
            _registry[self._popen.pid] = self
            _watchdog.watch(self._popen.pid)
        return self

    def copy(self) -> ManagedProcess:
        """A new, unstarted process with the same command, environment, log and folder."""
        return ManagedProcess(
            self.name,
            self.argv,
            env=self.env,
            log_path=self.log_path,
            cwd=self.cwd,
            stop_late=self.stop_late,
        )

    def terminate(self) -> None:
        """Send SIGTERM to the process group without waiting (``stop()`` then waits)."""
        if self._popen is not None and self._popen.poll() is None and not self._terminated:
            _signal_group(self._popen.pid, signal.SIGTERM)
            self._terminated = True

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``timeout`` s; returns the exit status."""
        popen = self._popen
        if popen is None:
            return None
        if self._stopped:
            # Signalling the group again later could hit an unrelated group that reused the id.
            return popen.returncode
        pgid = popen.pid
        if popen.poll() is None:
            self.terminate()
            try:
                popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(pgid, signal.SIGKILL)
                popen.wait()
        # Members of the group may outlive its leader; they go too.
        _signal_group(pgid, signal.SIGKILL)
        self._stopped = True
        with _lock:
            _registry.pop(pgid, None)
            _watchdog.forget(pgid)
        return popen.returncode

    def log_text(self) -> str:
        """Everything this run (since start) wrote to its log."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = _TAIL_LINES) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def failure(self, what: str) -> CanaryError:
        """A CanaryError about this process, with its state and the tail of its log."""
        state = f"exited with status {self.returncode}" if self._popen and not self.alive else ""
        head = f"{self.name}: {what}" + (f" ({state})" if state else "")
        tail = self.log_tail()
        body = "\n".join("    " + line for line in tail.splitlines()) if tail else "    (empty)"
        return CanaryError(f"{head}; last lines of {self.log_path}:\n{body}")

    def wait_until(
        self, check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
    ) -> None:
        """Poll ``check`` until it is true; CanaryError if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive:
                raise self.failure(f"exited while waiting for {what}")
            with contextlib.suppress(Exception):
                if check():
                    return
            if time.monotonic() >= deadline:
                raise self.failure(f"no {what} after {timeout:g} s")
            time.sleep(interval)

    def wait_for_port(self, host: str, port: int, timeout: float = 10.0) -> None:
        """Wait until ``host:port`` accepts TCP connections."""

        def listening() -> bool:
            with socket.create_connection((host, port), timeout=0.5):
                return True

        self.wait_until(listening, timeout, f"listener on {host}:{port}")

    def wait_for_log(self, pattern: str | re.Pattern[str], timeout: float = 10.0) -> str:
        """Wait until the log of this run contains ``pattern`` (text or regex); returns the line."""
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))
        found: list[str] = []
        position, partial = self._log_offset, b""

        def seen() -> bool:
            # Read only what is new: a busy worker's log grows by many lines per poll.
            nonlocal position, partial
            with open(self.log_path, "rb") as f:
                f.seek(position)
                chunk = f.read()
            position += len(chunk)
            *lines, partial = (partial + chunk).split(b"\n")
            for raw in [*lines, partial]:
                line = raw.decode("utf-8", "replace")
                if regex.search(line):
                    found.append(line)
                    return True
            return False

        self.wait_until(seen, timeout, f"log line matching {regex.pattern!r}")
        return found[0]


def running() -> list[ManagedProcess]:
    """The processes started by this process and not yet stopped, oldest first."""
    with _lock:
        return list(_registry.values())


def stop_all(timeout: float = 10.0) -> None:
    """Stop every registered process: all at once, those marked ``stop_late`` (Redis) after.

    Each gets ``timeout`` seconds, in parallel: one after another, a few Celery workers taking
    their warm shutdown on a busy machine would add up to longer than callers wait for us.
    """
    if os.getpid() != _owner_pid:
        return  # a forked child must not stop its parent's processes
    procs = list(reversed(running()))
    for late in (False, True):
        batch = [p for p in procs if p.stop_late == late]
        for proc in batch:
            with contextlib.suppress(Exception):
                proc.terminate()
        for proc in batch:
            with contextlib.suppress(Exception):
                proc.stop(timeout=timeout)


def set_last_will(argv: list[str] | None) -> None:
    """Have ``argv`` run if this process dies before calling ``set_last_will(None)`` (kill -9
    included): the watchdog runs it (up to LAST_WILL_TIMEOUT_S) before killing the children."""
    if os.getpid() == _owner_pid:
        _watchdog.last_will(argv)


_handlers_installed = False


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds context managers and then runs atexit, which stops what is left.
    raise SystemExit(128 + signum)


def install_signal_handlers() -> None:
    """Turn SIGTERM and SIGHUP into SystemExit, where nobody else has claimed them yet."""
    global _handlers_installed
    if _handlers_installed or not _in_main_thread():
        return
    _handlers_installed = True
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(sig) == signal.SIG_DFL:
                signal.signal(sig, _exit_on_signal)


def _at_exit() -> None:
    stop_all()
    if os.getpid() == _owner_pid:
        _watchdog.close()


atexit.register(_at_exit)


def _reset_after_fork() -> None:
    global _owner_pid, _watchdog, _handlers_installed
    # A forked child holding the pipe's write end would keep the watchdog from seeing our death.
    # Closed at the fd level (the buffered object's lock may be held by a thread that did not
    # survive the fork) and the object kept, so that its finaliser never closes a reused fd.
    if _watchdog._stdin is not None:
        with contextlib.suppress(OSError, ValueError):
            os.close(_watchdog._stdin.fileno())
        _inherited.append(_watchdog)
    _owner_pid = os.getpid()
    _registry.clear()
    _watchdog = _Watchdog()
    _handlers_installed = False


os.register_at_fork(after_in_child=_reset_after_fork)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name) or "proc"
