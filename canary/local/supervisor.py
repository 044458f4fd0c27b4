"""The background supervisor behind `canary local up`: runs the fleet and Flower, restarts what
dies (with backoff, logged), publishes each process's health in the state file, stops on SIGTERM."""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from canary.errors import CanaryError
from canary.local.fleet import LocalFleet
from canary.local.flower import start_flower, wait_for_flower
from canary.local.procs import ManagedProcess
from canary.local.state import remove_state, write_state
from canary.settings import load_settings

FLOWER_USER = "canary"
# A process that stayed up this long is healthy again: its next death restarts it at once.
HEALTHY_AFTER_S = 60.0
MAX_BACKOFF_S = 30.0
POLL_S = 0.5


def first_backoff() -> float:
    """CANARY_LOCAL_RESTART_BACKOFF: seconds before the first restart of a dead process (1)."""
    try:
        return max(0.0, float(os.environ.get("CANARY_LOCAL_RESTART_BACKOFF") or 1.0))
    except ValueError:
        return 1.0


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} supervisor: {message}", flush=True)


@dataclass
class Health:
    """What `canary local status` shows of one process."""

    pid: int | None
    alive: bool
    restarts: int = 0
    last_exit: int | None = None
    next_restart_at: float | None = None


@dataclass
class _Watched:
    name: str
    current: Callable[[], ManagedProcess | None]
    restart: Callable[[], object]
    restarts: int = 0
    failures_in_a_row: int = 0
    up_since: float = 0.0
    next_restart_at: float | None = None
    last_exit: int | None = None

    def health(self) -> Health:
        proc = self.current()
        return Health(
            pid=proc.pid if proc is not None else None,
            alive=proc is not None and proc.alive,
            restarts=self.restarts,
            last_exit=self.last_exit,
            next_restart_at=self.next_restart_at,
        )


def hold_lock(path: Path) -> IO[str] | None:
    """An exclusive lock on ``path`` held while the returned file stays open; None if taken."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a")  # noqa: SIM115 - kept open: closing it releases the lock
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


class Supervisor:
    """The fleet, Flower, and the loop that keeps them alive."""

    def __init__(self, workdir: Path, environments: str) -> None:
        settings = load_settings()
        self.workdir = workdir
        self.queues = [
            f"{settings.probe_queue_prefix}.{env.strip()}"
            for env in environments.split(",")
            if env.strip()
        ]
        self.control_queue = settings.control_queue
        # Append-only: a Redis restarted after a crash still holds the rollouts' records.
        self.fleet = LocalFleet(
            workdir, probe_queues=self.queues, probe_concurrency=64, beat=True, appendonly=True
        )
        self.flower: ManagedProcess | None = None
        self.flower_password = ""
        self.stopping = threading.Event()
        self.started_at = time.time()
        self.watched: list[_Watched] = []

    def start(self) -> None:
        # Flower starts beside the workers and beat: one after the other took seconds more.
        # What fails here is stopped by serve(), which always calls stop().
        self.fleet.launch()
        self.flower, _, self.flower_password = start_flower(
            self.workdir, self.fleet.redis_url, wait=False
        )
        self.fleet.wait_ready()
        wait_for_flower(self.flower)
        fleet = self.fleet
        self.watched = [
            _Watched("redis", lambda: fleet.redis, fleet.restart_redis),
            _Watched(
                "control-worker",
                lambda: fleet.control_worker,
                lambda: fleet.restart_worker("control"),
            ),
            _Watched(
                "probe-worker", lambda: fleet.probe_worker, lambda: fleet.restart_worker("probe")
            ),
            _Watched("beat", lambda: fleet.beat_process, fleet.restart_beat),
            _Watched("flower", lambda: self.flower, self._restart_flower),
        ]
        now = time.monotonic()
        for w in self.watched:
            w.up_since = now
        self.publish()
        log(f"fleet up: redis, workers, beat and flower; state in {self.workdir / 'state.json'}")

    def _restart_flower(self) -> None:
        assert self.flower is not None
        port = urlsplit(self.flower.url).port
        self.flower.stop(timeout=5)
        self.flower, _, _ = start_flower(
            self.workdir, self.fleet.redis_url, port=port, password=self.flower_password
        )

    def publish(self) -> None:
        """Write the state file: where the fleet is, and how each of its processes is."""
        assert self.flower is not None
        write_state(
            self.workdir,
            {
                "pid": os.getpid(),
                "redis_url": self.fleet.redis_url,
                "flower_url": self.flower.url,
                "flower_user": FLOWER_USER,
                "flower_password": self.flower_password,
                "queues": [self.control_queue, *self.queues],
                "log_dir": str(self.fleet.log_dir),
                "started_at": self.started_at,
                "processes": {w.name: asdict(w.health()) for w in self.watched},
            },
        )

    def check(self) -> bool:
        """One round: notice deaths, restart what is due. True when anything changed."""
        changed = False
        now = time.monotonic()
        for w in self.watched:
            proc = w.current()
            if proc is not None and proc.alive:
                if w.failures_in_a_row and now - w.up_since >= HEALTHY_AFTER_S:
                    w.failures_in_a_row = 0
                continue
            if w.next_restart_at is None:
                w.last_exit = proc.returncode if proc is not None else None
                delay = min(MAX_BACKOFF_S, first_backoff() * 2**w.failures_in_a_row)
                w.next_restart_at = time.time() + delay
                log(f"{w.name} exited (status {w.last_exit}); restarting in {delay:g} s")
                changed = True
            if time.time() < w.next_restart_at:
                continue
            w.failures_in_a_row += 1
            try:
                w.restart()
            except CanaryError as exc:
                delay = min(MAX_BACKOFF_S, first_backoff() * 2**w.failures_in_a_row)
                w.next_restart_at = time.time() + delay
                log(f"{w.name} did not restart: {exc}; next try in {delay:g} s")
            else:
                w.restarts += 1
                w.next_restart_at = None
                w.up_since = time.monotonic()
                new = w.current()
                log(f"{w.name} restarted (pid {new.pid if new else '?'}, restart {w.restarts})")
            changed = True
        return changed

    def run(self) -> None:
        while not self.stopping.wait(POLL_S):
            if self.check():
                self.publish()

    def stop(self) -> None:
        remove_state(self.workdir)
        if self.flower is not None:
            self.flower.terminate()  # stops while the fleet does
        self.fleet.stop()
        if self.flower is not None:
            self.flower.stop()


def serve(workdir: Path, environments: str) -> int:
    """Run the fleet until SIGTERM or SIGINT, then stop all of it."""
    lock = hold_lock(workdir / "supervisor.lock")
    if lock is None:
        log(f"another supervisor already runs the fleet in {workdir}")
        return 1
    supervisor = Supervisor(workdir, environments)

    def on_term(signum: int, frame: object) -> None:
        supervisor.stopping.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, on_term)
    try:
        try:
            supervisor.start()
        except CanaryError as exc:
            log(f"the fleet did not start: {exc}")
            return 1
        supervisor.run()
    finally:
        log("stopping")
        supervisor.stop()
        lock.close()
    return 0


if __name__ == "__main__":
    sys.exit(serve(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "default"))
