"""Running probe batches on a worker: one pacer per process, fair shares, idempotent recording.

A batch task only hands its batch to the process's pacer and returns, so a worker slot is held
for milliseconds rather than for the whole step: every batch a worker accepts is paced by one
thread, and the transactions themselves run on one bounded pool that all batches share in the
order their probes fall due. A probe that could not start near its due time is dropped and
counted (``meta["late"]``) rather than fired in a burst, and a failed canary run is pushed at
once and wakes an interim check (rate-limited, less so while most canary runs fail), instead of
waiting for the next push.

One module though long: the pacer, its I/O pool and the batch's claim and record share the
batch's lifecycle and its locks, and reading them apart would hide how a batch is never
probed twice.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import logging
import os
import socket
import threading
import time
import urllib.parse
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

from canary.errors import StoreError
from canary.probing import Target, run_transaction
from canary.probing.http import ProbeSession
from canary.probing.result import TransactionResult
from canary.rollout.windows import STRAGGLER_GRACE_S, BatchSpec
from canary.store import Store
from canary.store.retry import retry
from canary.transactions import Transaction

log = logging.getLogger(__name__)

# A claim outlives its worker by at most CLAIM_TTL_S; the pacer refreshes them every HEARTBEAT_S.
CLAIM_TTL_S = 10.0
HEARTBEAT_S = 2.0
# How long a finished batch keeps trying to record while Redis is away (e.g. restarting).
RECORD_RETRY_S = 60.0
# Transactions in flight per worker process, across all the batches it paces at once.
DEFAULT_PROBE_THREADS = 256
# A probe that cannot start within this long of its due time (or two probe spacings of its
# series, when longer) is dropped and counted: a late burst would be judged as if it had been
# spread over the step, and would only deepen the backlog that made it late.
LATE_LIMIT_S = 5.0
# At most one urgent push per batch, and one woken check per window and process, this often;
# FAST_WAKE_GAP_S while at least FAST_WAKE_SHARE of the canary runs since the last one failed.
# A hard failure's evidence comes in a burst every probe spacing (0.5 s at 2 runs/s), and once
# a second the wakes were a second behind it when the engine had enough: a quarter of the time
# to the router (scripts/bench-scale); a canary that fails now and then keeps the slower pace,
# which bounds the checks its failures cost the control process.
WAKE_GAP_S = 1.0
FAST_WAKE_GAP_S = 0.25
FAST_WAKE_SHARE = 0.5
# Threads of a process that talk to Redis for the pacer (pushes, heartbeats, records).
IO_THREADS = 8

Callback = Callable[[], None]
Waker = Callable[[float], None]


def probe_offsets(
    slot: int, slots: int, count: int, series_size: int, spread_s: float
) -> list[float]:
    """Seconds after the window start at which this batch's probes begin.

    The series' probes are spaced evenly over the spread; batch ``slot`` of ``slots`` takes
    every ``slots``-th one, so batches interleave instead of each making a burst.
    """
    return [((slot + k * slots) / max(series_size, 1)) * spread_s for k in range(count)]


def late_limit(spread_s: float, series_size: int) -> float:
    """How late a probe may start before it is dropped; never for an unpaced batch (spread 0)."""
    if spread_s <= 0:
        return float("inf")
    return max(LATE_LIMIT_S, 2.0 * spread_s / max(series_size, 1))


def host_name() -> str:
    """How this worker names its host in batch records (CANARY_HOST, else the hostname)."""
    return os.environ.get("CANARY_HOST") or socket.gethostname()


def source_address(url: str) -> str | None:
    """The local address this host would use to reach ``url`` (no packet is sent)."""
    parts = urllib.parse.urlsplit(url)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((parts.hostname or "127.0.0.1", parts.port or 80))
            return str(s.getsockname()[0])
    except OSError:
        return None


@dataclass(eq=False)
class _Job:
    """One accepted batch while the pacer runs it; touched under ``lock`` from several threads."""

    store: Store
    spec: dict[str, Any]
    owner: str
    tx: Transaction
    targets: list[Target]
    offsets: list[float]
    on_complete: Callback | None
    on_failure: Waker | None
    # Re-entrant: a future that is already done runs its callback in the thread that adds it.
    lock: threading.RLock = field(default_factory=threading.RLock)
    done: threading.Event = field(default_factory=threading.Event)
    summary: dict[str, Any] = field(default_factory=dict)
    # Futures in firing order; unpushed: (probe index, version, future) not yet pushed ahead.
    futures: list[Future[TransactionResult]] = field(default_factory=list)
    unpushed: list[tuple[int, str, Future[TransactionResult]]] = field(default_factory=list)
    backlog: deque[tuple[int, float, Target]] = field(default_factory=deque)
    next_probe: int = 0
    inflight: int = 0
    late: int = 0
    max_late_s: float = 0.0
    judged: bool = False
    finishing: bool = False
    urgent_due: float = 0.0
    last_urgent: float = 0.0
    push_failed: bool = False
    started: float = field(default_factory=time.time)
    rid: str = field(init=False)
    window: str = field(init=False)
    batch_id: str = field(init=False)
    start_at: float = field(init=False)

    def __post_init__(self) -> None:
        spec = self.spec
        self.rid, self.window, self.batch_id = spec["rollout_id"], spec["window"], spec["batch_id"]
        self.start_at = float(spec["start_at"])

    @property
    def limit(self) -> int:
        """Runs in flight at once: the batch's share of the pool, so none crowds out the others."""
        per_version = min(int(self.spec.get("concurrency", 8)), int(self.spec["count"]))
        return max(len(self.targets), per_version * len(self.targets))

    def due(self, k: int) -> float:
        return self.start_at + self.offsets[k]

    def all_fired(self) -> bool:
        return (self.next_probe >= len(self.offsets) or self.judged) and not self.backlog


def wake_gap(runs: int, failed: int) -> float:
    """The wake gap after ``failed`` of ``runs`` canary runs failed (see FAST_WAKE_GAP_S)."""
    return FAST_WAKE_GAP_S if runs and failed >= FAST_WAKE_SHARE * runs else WAKE_GAP_S


class Pacer:
    """One per process: starts each accepted batch's probes when due, pushes, beats, records.

    A heap holds one entry per batch (its next probe's due time) plus the pushes and beats that
    are due; one thread pops them. HTTP work goes to the probe pool, Redis work to a small I/O
    pool, so the pacing thread never waits on either.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._heap: list[tuple[float, int, str, _Job | None]] = []
        self._seq = itertools.count()
        self._jobs: dict[str, _Job] = {}
        self._wakes: dict[tuple[str, str], float] = {}
        # Per window: canary runs settled since its last woken check, and how many failed.
        self._tally: dict[tuple[str, str], list[int]] = {}
        self._tally_lock = threading.Lock()
        self._pid = 0
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._io: ThreadPoolExecutor | None = None
        self._local = threading.local()

    # --- process-wide resources (re-made in a forked child, which inherits no threads) ------

    def _ensure(self) -> None:
        if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
            return
        size = int(os.environ.get("CANARY_PROBE_THREADS") or DEFAULT_PROBE_THREADS)
        self._pool = ThreadPoolExecutor(max(1, size), thread_name_prefix="probe")
        self._io = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="probe-io")
        self._heap, self._jobs, self._wakes, self._tally = [], {}, {}, {}
        self._pid = os.getpid()
        self._push(time.time() + HEARTBEAT_S, "beat", None)
        self._thread = threading.Thread(target=self._run, name="probe-pacer", daemon=True)
        self._thread.start()

    def session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = ProbeSession()
        return session

    def _push(self, at: float, kind: str, job: _Job | None) -> None:
        heapq.heappush(self._heap, (at, next(self._seq), kind, job))
        self._cv.notify()

    # --- accepting and waiting ----------------------------------------------------------------

    def add(self, job: _Job) -> None:
        with self._lock:
            self._ensure()
            self._jobs[job.owner] = job
            if job.offsets:
                self._push(job.due(0), "probe", job)
            else:
                self._io_submit(self._finish, job)
            flush_s = float(job.spec.get("flush_s") or 0.0)
            if flush_s > 0:
                self._push(job.start_at + flush_s, "flush", job)

    def active(self) -> int:
        """How many batches this process is pacing now."""
        with self._lock:
            return len(self._jobs) if self._pid == os.getpid() else 0

    def drain(self, timeout: float | None = None) -> int:
        """Wait for the batches in progress to record; returns how many did not in time.

        Without ``timeout``, each batch is waited for until its window's analysis would have
        given up on it (the end of its spread plus the stragglers' grace).
        """
        with self._lock:
            jobs = list(self._jobs.values()) if self._pid == os.getpid() else []
        now = time.time()
        for job in jobs:
            give_up = job.start_at + float(job.spec["spread_s"]) + STRAGGLER_GRACE_S
            wait = give_up - time.time() if timeout is None else now + timeout - time.time()
            job.done.wait(max(0.0, wait))
        return sum(1 for j in jobs if not j.done.is_set())

    # --- the pacing thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._heap or self._heap[0][0] > time.time():
                    self._cv.wait(
                        min(HEARTBEAT_S, self._heap[0][0] - time.time())
                        if self._heap
                        else HEARTBEAT_S
                    )
                due: list[tuple[str, _Job | None]] = []
                now = time.time()
                while self._heap and self._heap[0][0] <= now:
                    _, _, kind, job = heapq.heappop(self._heap)
                    due.append((kind, job))
            regular: list[_Job] = []
            urgent: list[_Job] = []
            for kind, job in due:
                try:
                    if kind == "probe" and job is not None:
                        self._fire(job)
                    elif kind == "flush" and job is not None:
                        regular.append(job)
                    elif kind == "urgent" and job is not None:
                        urgent.append(job)
                    elif kind == "beat":
                        self._io_submit(self._beat)
                except Exception:
                    log.exception("probe pacer: %s of a batch failed", kind)
            if regular or urgent:
                self._io_submit(self._flush, regular, urgent)

    def _fire(self, job: _Job) -> None:
        """Start probe ``job.next_probe`` against every target, then schedule the next one."""
        with job.lock:
            if job.judged or job.finishing:
                return
            k = job.next_probe
            job.next_probe += 1
            due = job.due(k)
            targets = job.targets if k % 2 == 0 else job.targets[::-1]
            # Alternating which version goes first, so neither is always the one that waits.
            for target in targets:
                job.backlog.append((k, due, target))
            self._start_backlog(job)
            more = job.next_probe < len(job.offsets)
        with self._lock:
            if more:
                self._push(job.due(job.next_probe), "probe", job)
        self._maybe_finish(job)

    def _start_backlog(self, job: _Job) -> None:
        """Start what the batch's share allows; drop what is too late to start. Holds job.lock."""
        if job.judged:
            job.backlog.clear()
            return
        limit = late_limit(float(job.spec["spread_s"]), int(job.spec["series_size"]))
        now = time.time()
        while job.backlog and job.inflight < job.limit:
            k, due, target = job.backlog.popleft()
            if now - due > limit:
                job.late += 1
                continue
            job.max_late_s = max(job.max_late_s, now - due)
            job.inflight += 1
            assert self._pool is not None
            fut = self._pool.submit(self._one, job, target)
            job.futures.append(fut)
            job.unpushed.append((k, target.version, fut))
            # A callback, not a call at the end of _one: the push it may ask for must find
            # this future done.
            fut.add_done_callback(functools.partial(self._settle, job))

    def _one(self, job: _Job, target: Target) -> TransactionResult:
        return run_transaction(job.tx, target, session=self.session())

    def _settle(self, job: _Job, fut: Future[TransactionResult]) -> None:
        result = fut.result() if fut.exception() is None else None
        urgent, gap = False, WAKE_GAP_S
        with job.lock:
            job.inflight -= 1
            self._start_backlog(job)
            if result is not None and result.version == "canary":
                gap = self._count(job, result.ok)
            if result is not None and not result.ok and result.version == "canary":
                urgent = job.on_failure is not None and not job.urgent_due and not job.judged
                if urgent:
                    job.urgent_due = max(time.time(), job.last_urgent + gap)
        if urgent:
            with self._lock:
                self._push(job.urgent_due, "urgent", job)
        self._maybe_finish(job)

    def _count(self, job: _Job, ok: bool) -> float:
        """Count a settled canary run in its window's tally; returns the window's wake gap."""
        with self._tally_lock:
            tally = self._tally.setdefault((job.rid, job.window), [0, 0])
            tally[0] += 1
            tally[1] += not ok
            return wake_gap(tally[0], tally[1])

    def _wake_gap(self, rid: str, window: str, *, reset: bool = False) -> float:
        with self._tally_lock:
            runs, failed = self._tally.get((rid, window), (0, 0))
            if reset:
                self._tally.pop((rid, window), None)
        return wake_gap(runs, failed)

    def _maybe_finish(self, job: _Job) -> None:
        with job.lock:
            if job.finishing or job.inflight or not job.all_fired():
                return
            job.finishing = True
        self._io_submit(self._finish, job)

    # --- Redis work, on the I/O pool -------------------------------------------------------------

    def _io_submit(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._io is not None

        def guarded() -> None:
            try:
                fn(*args)
            except Exception:
                log.exception("probe pacer: %s failed", getattr(fn, "__name__", fn))

        self._io.submit(guarded)

    def _beat(self) -> None:
        """Refresh every live claim in one round trip; a missed beat only risks a second runner."""
        with self._lock:
            jobs = [j for j in self._jobs.values() if not j.done.is_set()]
            self._push(time.time() + HEARTBEAT_S, "beat", None)
            now = time.time()
            self._wakes = {k: v for k, v in self._wakes.items() if v > now - 600}
            live = {(j.rid, j.window) for j in jobs}
        with self._tally_lock:
            self._tally = {k: v for k, v in self._tally.items() if k in live}
        by_store: dict[int, list[_Job]] = {}
        for job in jobs:
            by_store.setdefault(id(job.store), []).append(job)
        for group in by_store.values():
            claims = [(j.rid, j.window, j.batch_id, j.owner) for j in group]
            with contextlib.suppress(StoreError):
                group[0].store.refresh_claims(claims, CLAIM_TTL_S)

    def _flush(self, regular: list[_Job], urgent_jobs: list[_Job]) -> None:
        """Push finished runs ahead of the records, one call per window; wake checks if urgent.

        ``regular`` pushes are on the window's grid and schedule the next one; ``urgent`` ones
        follow a failed canary run, and ask for a check once pushed.
        """
        urgent = {id(j) for j in urgent_jobs}
        grid = {id(j) for j in regular}
        by_window: dict[tuple[str, str], list[_Job]] = {}
        for job in dict.fromkeys([*regular, *urgent_jobs]):
            by_window.setdefault((job.rid, job.window), []).append(job)
        for (rid, window), group in by_window.items():
            entries: list[tuple[str, TransactionResult]] = []
            taken: list[tuple[_Job, list[tuple[int, str, Future[TransactionResult]]]]] = []
            for job in group:
                with job.lock:
                    if job.judged:
                        continue
                    finished = [u for u in job.unpushed if u[2].done()]
                    job.unpushed = [u for u in job.unpushed if not u[2].done()]
                taken.append((job, finished))
                entries += [
                    (f"{job.batch_id}:{k}:{version}", f.result())
                    for k, version, f in finished
                    if f.exception() is None
                ]
            if not taken:
                continue
            try:
                status = group[0].store.record_interim(rid, window, entries) if entries else 0
            except StoreError as exc:
                # Best effort: the batch record is what counts; these runs go again next time.
                for job, finished in taken:
                    with job.lock:
                        job.unpushed = finished + job.unpushed
                quiet = all(job.push_failed for job, _ in taken)
                log.log(
                    logging.DEBUG if quiet else logging.WARNING,
                    "window %s of %s: cannot push interim results (%s); batch records unaffected",
                    window,
                    rid,
                    exc,
                )
                for job, _ in taken:
                    job.push_failed = True
                status = 0
            now = time.time()
            wake: Waker | None = None
            for job, _ in taken:
                with job.lock:
                    # The window was judged early (an interim check rolled back): the record
                    # will be refused, so probing on would only load a canary without traffic.
                    job.judged = job.judged or status < 0
                    if id(job) in urgent:
                        job.urgent_due, job.last_urgent = 0.0, now
                        wake = wake or job.on_failure
                    flush_s = float(job.spec.get("flush_s") or 0.0)
                    again = flush_s > 0 and id(job) in grid and not job.judged
                    again = again and not job.finishing
                if again:
                    # Pushes fall on the window's grid (start + k * flush_s), where interim
                    # checks look just after, so a check sees runs up to its own moment.
                    nxt = job.start_at + flush_s * ((now - job.start_at) // flush_s + 1)
                    with self._lock:
                        self._push(nxt, "flush", job)
                if job.judged:
                    self._maybe_finish(job)
            if wake is not None and status >= 0:
                self._wake(rid, window, wake, now)

    def _wake(self, rid: str, window: str, wake: Waker, now: float) -> None:
        """Ask for a check that sees what was just pushed, at most once per wake gap."""
        with self._lock:
            at = self._wakes.get((rid, window), 0.0)
            if at >= now:
                return  # a check is already due after this push: it will see it
            # The tally starts again: the next gap is set by what fails after this check.
            at = max(now, at + self._wake_gap(rid, window, reset=True))
            self._wakes[(rid, window)] = at
        try:
            wake(at - now)
        except Exception as exc:
            log.warning("window %s of %s: cannot ask for a check (%s)", window, rid, exc)

    def _finish(self, job: _Job) -> None:
        try:
            job.summary = _record_job(job)
        except Exception as exc:
            log.error("batch %s could not be recorded: %s", job.batch_id, exc)
            job.summary = {"batch_id": job.batch_id, "recorded": False, "error": str(exc)}
        finally:
            with contextlib.suppress(StoreError):
                job.store.release_claim(job.rid, job.window, job.batch_id, job.owner)
            with self._lock:
                self._jobs.pop(job.owner, None)
            job.done.set()


PACER = Pacer()


def _record_job(job: _Job) -> dict[str, Any]:
    results = [f.result() for f in job.futures if f.exception() is None]
    spec = job.spec
    planned = int(spec["count"]) * len(job.targets)
    meta = {
        "environment": spec.get("environment"),
        "host": host_name(),
        "source": source_address(job.targets[-1].base_url) if job.targets else None,
        "pid": os.getpid(),
        "runs": len(results),
        "planned": planned,
        "late": job.late,
        "max_late_s": round(job.max_late_s, 3),
        "started": job.started,
        "finished": time.time(),
    }
    if job.judged:
        log.info(
            "batch %s: window judged early; stopped after %d of %d",
            job.batch_id,
            len(results),
            planned,
        )
    if job.late:
        log.warning(
            "batch %s: %d of %d runs could not start within %.1f s of their time and were "
            "dropped: the probe workers are short of capacity",
            job.batch_id,
            job.late,
            planned,
            late_limit(float(spec["spread_s"]), int(spec["series_size"])),
        )
    status = _record(job.store, spec, results, meta)
    total = int(spec.get("window_batches") or 0)
    if status > 0 and job.on_complete is not None and total and status >= total:
        job.on_complete()
    outcome = {-1: "refused: the window was judged without it", 0: "duplicate"}.get(status)
    summary: dict[str, Any] = {
        "batch_id": job.batch_id,
        "recorded": status > 0,
        "runs": len(results),
        "ok": sum(1 for r in results if r.ok),
        "late": job.late,
    }
    if outcome:
        summary["skipped"] = outcome
    if job.judged:
        summary["stopped_early"] = True
    return summary


def _record(
    store: Store,
    spec: dict[str, Any],
    results: list[TransactionResult],
    meta: dict[str, Any],
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Record with backoff while Redis is away: probe results are too costly to drop."""
    return retry(
        lambda: store.record_batch_status(
            spec["rollout_id"], spec["window"], spec["batch_id"], results, meta=meta
        ),
        deadline_s=RECORD_RETRY_S,
        what=f"recording batch {spec['batch_id']}",
        first_delay_s=0.25,
        max_delay_s=5.0,
        sleep=sleep,
        clock=clock,
    )


def submit_batch(
    store: Store,
    batch: BatchSpec | dict[str, Any],
    *,
    on_complete: Callback | None = None,
    on_failure: Waker | None = None,
    defer: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[dict[str, Any], _Job | None]:
    """Claim the batch described by ``batch`` (a BatchSpec, or its JSON) and hand it to
    this process's pacer; returns at once with what happened, and the job when accepted.

    ``on_complete`` is called when this batch was the last of its window to be recorded, so the
    analysis can start at once (fan-in without chord). ``on_failure(countdown)`` is called after
    a failed canary run was pushed, to ask for an interim check that sees it. When another live
    runner holds the batch, ``defer`` returns ``{"deferred": True}`` at once (the caller checks
    again later) instead of waiting for it.
    """
    bs = batch if isinstance(batch, BatchSpec) else BatchSpec.from_dict(batch)
    spec = bs.to_dict()
    rid, window, batch_id = bs.rollout_id, bs.window, bs.batch_id
    # A window is sealed once judged, and when its rollout ends: then the batch is not wanted.
    if store.is_sealed(rid, window):
        return {"batch_id": batch_id, "skipped": "rollout finished or moved on"}, None
    spread = float(spec["spread_s"])
    give_up = float(spec["start_at"]) + spread + STRAGGLER_GRACE_S
    owner = f"{host_name()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    # A re-delivered copy waits while the first runner's claim is alive rather than probing the
    # same batch twice; the claim expires soon after a killed runner, and the copy takes over.
    while not store.claim_batch(rid, window, batch_id, owner, CLAIM_TTL_S):
        if batch_id in store.recorded_batches(rid, window) or store.is_sealed(rid, window):
            return {"batch_id": batch_id, "skipped": "already recorded"}, None
        if time.time() > give_up:
            return {
                "batch_id": batch_id,
                "skipped": "claimed by a runner that did not finish",
            }, None
        if defer:
            return {"batch_id": batch_id, "deferred": True, "check_by": give_up}, None
        sleep(1.0)
    skipped = None
    if batch_id in store.recorded_batches(rid, window) or store.is_sealed(rid, window):
        skipped = "already recorded"
    elif time.time() > give_up:
        skipped = "too late: the window was judged without it"
    if skipped:
        with contextlib.suppress(StoreError):
            store.release_claim(rid, window, batch_id, owner)
        return {"batch_id": batch_id, "skipped": skipped}, None
    targets = [
        Target(version=name, base_url=t.url, headers=dict(t.headers))
        for name, t in bs.targets.items()
    ]
    job = _Job(
        store=store,
        spec=spec,
        owner=owner,
        tx=Transaction.model_validate(bs.transaction_def),
        targets=targets,
        offsets=probe_offsets(
            spec["slot"], spec["slots"], spec["count"], spec["series_size"], spread
        ),
        on_complete=on_complete,
        on_failure=on_failure,
    )
    PACER.add(job)
    accepted = {"batch_id": batch_id, "accepted": True, "check_by": give_up}
    return {**accepted, "runs_planned": len(job.offsets)}, job


def run_batch(
    store: Store,
    spec: BatchSpec | dict[str, Any],
    *,
    on_complete: Callback | None = None,
    on_failure: Waker | None = None,
    defer: bool = False,
) -> dict[str, Any]:
    """``submit_batch``, then wait for the batch to be recorded; returns its summary."""
    out, job = submit_batch(
        store, spec, on_complete=on_complete, on_failure=on_failure, defer=defer
    )
    if job is None:
        return out
    job.done.wait()
    return job.summary
