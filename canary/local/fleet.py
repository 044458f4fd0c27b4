"""LocalFleet: Redis (unless given) plus control and probe Celery workers, started as one unit."""

from __future__ import annotations

import re
import socket
import sys
import time
import uuid
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote, urlsplit

from canary.errors import CanaryError
from canary.local.procs import ManagedProcess
from canary.local.redis import redis_pings, start_redis
from canary.settings import load_settings

__all__ = ["LocalFleet"]

# Ceilings for a busy machine (eight Celery processes starting on two cores take a while; at a
# load of 18 one took over a minute), each process its own: one shared deadline left the last
# of them a few seconds. A worker that cannot start exits, which ends the wait at once.
WORKER_START_TIMEOUT = 120.0
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "FATAL")


class LocalFleet:
    """Redis (unless one is given) plus a control and a probe Celery worker, as one unit.

    Workers use the threads pool so each is a single process: stopping its process group, or
    PDEATHSIG when we die, is then a complete cleanup. Queues default to the settings'
    (CANARY_CONTROL_QUEUE, CANARY_PROBE_QUEUE_PREFIX + ".default"); ``env`` adds variables
    for the workers; ``celery_app`` is what ``celery -A`` loads. With ``beat`` a Celery beat
    runs too (its schedule file under ``workdir``), ticking the stable monitors (canary/monitor.py).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        redis_url: str | None = None,
        probe_queues: list[str] | None = None,
        probe_concurrency: int = 16,
        # The control worker's threads mostly wait on Redis round trips (under a third of a
        # core at 50 rollouts, scripts/bench-scale): 4 made step ends queue behind each other.
        control_concurrency: int = 16,
        log_level: str = "INFO",
        celery_app: str = "workers.app:app",
        control_queue: str | None = None,
        env: dict[str, str] | None = None,
        appendonly: bool = False,
        beat: bool = False,
    ) -> None:
        if log_level.upper() not in _LOG_LEVELS:
            raise CanaryError(f"unknown log level {log_level!r}; known: {', '.join(_LOG_LEVELS)}")
        self.workdir = Path(workdir).resolve()
        self.log_dir = self.workdir / "logs"
        settings = load_settings()
        self._given_redis_url = redis_url or settings.redis_url
        self._redis_url: str | None = self._given_redis_url
        self.probe_queues = list(probe_queues or [f"{settings.probe_queue_prefix}.default"])
        self.control_queue = control_queue or settings.control_queue
        self.probe_concurrency = probe_concurrency
        self.control_concurrency = control_concurrency
        self.log_level = log_level.upper()
        self.celery_app = celery_app
        self.env = dict(env or {})
        self.appendonly = appendonly
        self.beat = beat
        self._tag = uuid.uuid4().hex[:8]
        # Celery expands %h in -n with socket.gethostname(); these are the expanded names.
        host = socket.gethostname()
        self.control_node = f"control-{self._tag}@{host}"
        self.probe_node = f"probe-{self._tag}@{host}"
        self.redis: ManagedProcess | None = None
        self.control_worker: ManagedProcess | None = None
        self.probe_worker: ManagedProcess | None = None
        self.beat_process: ManagedProcess | None = None
        self.startup_seconds: float | None = None

    @property
    def redis_url(self) -> str:
        """The URL of the fleet's Redis: the one given, or ours once started."""
        if self._redis_url is None:
            raise CanaryError("the local fleet has no Redis until it is started")
        return self._redis_url

    def __enter__(self) -> LocalFleet:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _worker_argv(self, role: str, queues: list[str], concurrency: int) -> list[str]:
        return [
            sys.executable, "-m", "celery", "-A", self.celery_app, "worker",
            "-Q", ",".join(queues),
            "-n", f"{role}-{self._tag}@%h",
            "--pool", "threads",
            "-c", str(concurrency),
            "--without-gossip", "--without-mingle",
            "-l", self.log_level,
        ]  # fmt: skip

    def _beat_argv(self) -> list[str]:
        return [
            sys.executable, "-m", "celery", "-A", self.celery_app, "beat",
            "--schedule", str(self.workdir / "celerybeat-schedule"),
            "-l", self.log_level,
        ]  # fmt: skip

    def start(self) -> LocalFleet:
        """Start whatever is missing; returns once both workers are ready (CanaryError if not)."""
        if self.control_worker is not None and self.control_worker.alive:
            return self
        began = time.monotonic()
        self.launch()
        self.wait_ready()
        self.startup_seconds = time.monotonic() - began
        return self

    def launch(self) -> LocalFleet:
        """Start Redis (unless given) and wait for it, then start the workers without waiting
        for them (wait_ready() does): their start-ups, seconds each, overlap (Flower's too)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self._redis_url is None:
                self.redis, self._redis_url = start_redis(self.workdir, appendonly=self.appendonly)
            env = self._worker_env()
            self.control_worker = ManagedProcess(
                "control-worker",
                self._worker_argv("control", [self.control_queue], self.control_concurrency),
                env=env,
                log_path=self.log_dir / "control-worker.log",
                cwd=self.workdir,
            ).start()
            self.probe_worker = ManagedProcess(
                "probe-worker",
                self._worker_argv("probe", self.probe_queues, self.probe_concurrency),
                env=env,
                log_path=self.log_dir / "probe-worker.log",
                cwd=self.workdir,
            ).start()
        except BaseException:
            self.stop(timeout=3)
            raise
        return self

    def _worker_env(self) -> dict[str, str]:
        return {**self.env, "CANARY_REDIS_URL": self.redis_url, "PYTHONUNBUFFERED": "1"}

    def wait_ready(self) -> None:
        """Wait until the launched workers are ready, then start beat; on failure stop all."""
        try:
            # Each its own ceiling: they start side by side, and on a busy machine the first
            # may take most of a shared one, leaving the next a second or two.
            assert self.control_worker is not None and self.probe_worker is not None
            self._wait_ready(self.control_worker, self.control_node, WORKER_START_TIMEOUT)
            self._wait_ready(self.probe_worker, self.probe_node, WORKER_START_TIMEOUT)
            # Beat only once the workers consume: ticks queued while they start would run
            # back to back, two monitor probes a fraction of their interval apart.
            if self.beat:
                self.beat_process = ManagedProcess(
                    "beat", self._beat_argv(), env=self._worker_env(),
                    log_path=self.log_dir / "beat.log", cwd=self.workdir,
                ).start()  # fmt: skip
                self.beat_process.wait_for_log(self._beat_ready(), WORKER_START_TIMEOUT)
        except BaseException:
            self.stop(timeout=3)
            raise

    def restart_worker(self, role: str) -> ManagedProcess:
        """Start a fresh ``"control"`` or ``"probe"`` worker in place of the old one (which is
        stopped if still alive); returns once it is ready."""
        if role not in ("control", "probe"):
            raise CanaryError(f"unknown worker role {role!r}; known: control, probe")
        old = self.control_worker if role == "control" else self.probe_worker
        if old is None:
            raise CanaryError(f"the local fleet has no {role} worker until it is started")
        old.stop(timeout=5)
        new = old.copy().start()
        node = self.control_node if role == "control" else self.probe_node
        if role == "control":
            self.control_worker = new
        else:
            self.probe_worker = new
        self._wait_ready(new, node, WORKER_START_TIMEOUT)
        return new

    def _beat_ready(self) -> str:
        # Above INFO beat does not log "Starting...", but always prints its banner.
        return "beat: Starting" if self.log_level in ("DEBUG", "INFO") else "is starting."

    def restart_beat(self) -> ManagedProcess:
        """Start a fresh beat in place of the old one (stopped if still alive); returns once it
        ticks."""
        if self.beat_process is None:
            raise CanaryError("the local fleet has no beat (it was started without one)")
        self.beat_process.stop(timeout=5)
        self.beat_process = self.beat_process.copy().start()
        self.beat_process.wait_for_log(self._beat_ready(), WORKER_START_TIMEOUT)
        return self.beat_process

    def restart_redis(self, *, down_s: float = 0.0) -> None:
        """Stop our Redis (SIGTERM: an append-only file is flushed), wait ``down_s``, start it
        again on the same port and files; with ``appendonly`` its data survives."""
        if self.redis is None or self._redis_url is None:
            raise CanaryError("the local fleet did not start its Redis, so cannot restart it")
        parts = urlsplit(self._redis_url)
        self.redis.stop(timeout=10)
        time.sleep(down_s)
        self.redis, self._redis_url = start_redis(
            self.workdir,
            port=parts.port,
            appendonly=self.appendonly,
            password=unquote(parts.password or "") or None,
        )

    def _wait_ready(self, worker: ManagedProcess, node: str, timeout: float) -> None:
        if self.log_level in ("DEBUG", "INFO"):
            worker.wait_for_log(re.compile(re.escape(node) + r" ready\."), timeout)
            return
        # Above INFO the worker does not log "ready.": ask it over the broker instead.
        from celery import Celery

        client = Celery(broker=self.redis_url, set_as_current=False)
        client.conf.accept_content = ["json"]
        try:
            worker.wait_until(
                lambda: bool(client.control.ping(destination=[node], timeout=0.5)),
                timeout,
                f"ping reply from {node}",
                interval=0.1,
            )
        finally:
            client.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop beat, the workers (letting running tasks finish within ``timeout``), then Redis."""
        procs = [p for p in (self.beat_process, self.probe_worker, self.control_worker) if p]
        for proc in procs:  # all shut down at once: a warm shutdown takes about a second
            proc.terminate()
        for proc in procs:
            proc.stop(timeout=timeout)
        if self.redis is not None:
            self.redis.stop(timeout=timeout)
            self.redis = None
            self._redis_url = self._given_redis_url

    def status(self) -> dict[str, bool]:
        """Component name → alive (for a Redis we did not start: whether it answers PING)."""
        if self.redis is not None:
            redis_ok = self.redis.alive
        elif self._redis_url is not None:
            try:
                redis_ok = redis_pings(self._redis_url)
            except Exception:
                redis_ok = False
        else:
            redis_ok = False
        return {
            "redis": redis_ok,
            "control-worker": self.control_worker is not None and self.control_worker.alive,
            "probe-worker": self.probe_worker is not None and self.probe_worker.alive,
            **(
                {"beat": self.beat_process is not None and self.beat_process.alive}
                if self.beat
                else {}
            ),
        }

    def processes(self) -> list[ManagedProcess]:
        """The processes this fleet started (for pids, logs and tests)."""
        procs = (self.redis, self.control_worker, self.probe_worker, self.beat_process)
        return [p for p in procs if p is not None]
