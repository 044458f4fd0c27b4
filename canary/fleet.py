"""Running one probe batch on a worker: pacing over the window, concurrency, idempotent recording."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import redis
import requests

from canary.errors import StoreError
from canary.probing import Target, run_transaction
from canary.probing.http import ProbeSession
from canary.probing.result import TransactionResult
from canary.rollout.windows import STRAGGLER_GRACE_S, BatchSpec
from canary.store import Store
from canary.transactions import Transaction

log = logging.getLogger(__name__)

# A claim outlives its worker by at most CLAIM_TTL_S; the runner refreshes it every HEARTBEAT_S.
CLAIM_TTL_S = 10.0
HEARTBEAT_S = 2.0
# How long a finished batch keeps trying to record while Redis is away (e.g. restarting).
RECORD_RETRY_S = 60.0
# Transactions in flight per worker process, across all the batches it paces at once.
DEFAULT_PROBE_THREADS = 256


def probe_offsets(
    slot: int, slots: int, count: int, series_size: int, spread_s: float
) -> list[float]:
    """Seconds after the window start at which this batch's probes begin.

    The series' probes are spaced evenly over the spread; batch ``slot`` of ``slots`` takes
    every ``slots``-th one, so batches interleave instead of each making a burst.
    """
    return [((slot + k * slots) / max(series_size, 1)) * spread_s for k in range(count)]


class _ProbePool:
    """One thread pool per process for the HTTP work of every batch the process runs.

    A batch's task thread only paces (it sleeps until a probe is due and hands it over), so a
    worker can pace many batches at once while the transactions themselves share one bounded
    pool, each thread with its own keep-alive ``ProbeSession`` (lean per request; see there).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0
        self._local = threading.local()

    def executor(self) -> ThreadPoolExecutor:
        with self._lock:
            # A forked child inherits the object but none of the threads.
            if self._pool is None or self._pid != os.getpid():
                size = int(os.environ.get("CANARY_PROBE_THREADS") or DEFAULT_PROBE_THREADS)
                self._pool = ThreadPoolExecutor(max(1, size), thread_name_prefix="probe")
                self._pid = os.getpid()
            return self._pool

    def session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = ProbeSession()
        return session


POOL = _ProbePool()


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


def run_batch(
    store: Store,
    spec: BatchSpec | dict[str, Any],
    *,
    now: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    on_complete: Callable[[], None] | None = None,
    defer: bool = False,
) -> dict[str, Any]:
    """Run the batch described by ``spec`` (a BatchSpec, or its JSON) and record it once.

    ``on_complete`` is called when this batch was the last of its window to be recorded, so the
    analysis can start at once instead of waiting for its scheduled time (fan-in without chord).
    When another live runner holds the batch, ``defer`` returns ``{"deferred": True}`` at once
    (the caller checks again later) instead of waiting for it while holding a worker slot.
    """
    if isinstance(spec, dict):
        spec = BatchSpec.from_dict(spec)
    rid, window, batch_id = spec.rollout_id, spec.window, spec.batch_id
    # A window is sealed once judged, and when its rollout ends: then the batch is not wanted.
    if store.is_sealed(rid, window):
        return {"batch_id": batch_id, "skipped": "rollout finished or moved on"}
    spread = float(spec.spread_s)
    give_up = float(spec.start_at) + spread + STRAGGLER_GRACE_S
    owner = f"{host_name()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    # A re-delivered copy waits while the first runner's claim is alive rather than probing the
    # same batch twice; the claim expires soon after a killed runner, and the copy takes over.
    while not store.claim_batch(rid, window, batch_id, owner, CLAIM_TTL_S):
        if batch_id in store.recorded_batches(rid, window) or store.is_sealed(rid, window):
            return {"batch_id": batch_id, "skipped": "already recorded"}
        if now() > give_up:
            return {"batch_id": batch_id, "skipped": "claimed by a runner that did not finish"}
        if defer:
            return {"batch_id": batch_id, "deferred": True, "check_by": give_up}
        sleep(1.0)
    try:
        if batch_id in store.recorded_batches(rid, window) or store.is_sealed(rid, window):
            return {"batch_id": batch_id, "skipped": "already recorded"}
        if now() > give_up:
            return {"batch_id": batch_id, "skipped": "too late: the window was judged without it"}
        return _run_claimed(store, spec, owner, now, sleep, on_complete)
    finally:
        # Left to expire when Redis is away: the batch's outcome matters, not the claim's.
        with contextlib.suppress(StoreError, redis.RedisError):
            store.release_claim(rid, window, batch_id, owner)


def _record(
    store: Store,
    spec: BatchSpec,
    results: list[TransactionResult],
    meta: dict[str, Any],
    sleep: Callable[[float], None],
) -> int:
    """Record with backoff while Redis is away: probe results are too costly to drop."""
    deadline = time.monotonic() + RECORD_RETRY_S
    delay = 0.25
    while True:
        try:
            return store.record_batch_status(
                spec.rollout_id, spec.window, spec.batch_id, results, meta=meta
            )
        except StoreError:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("batch %s: Redis unreachable, retrying in %.1fs", spec.batch_id, delay)
            sleep(delay)
            delay = min(delay * 2, 5.0)


def _run_claimed(
    store: Store,
    spec: BatchSpec,
    owner: str,
    now: Callable[[], float],
    sleep: Callable[[float], None],
    on_complete: Callable[[], None] | None,
) -> dict[str, Any]:
    rid, window, batch_id = spec.rollout_id, spec.window, spec.batch_id
    tx = Transaction.model_validate(spec.transaction_def)
    targets = [
        Target(version=name, base_url=t.url, headers=dict(t.headers))
        for name, t in spec.targets.items()
    ]
    offsets = probe_offsets(spec.slot, spec.slots, spec.count, spec.series_size, spec.spread_s)
    last_beat = now()
    start_at = float(spec.start_at)
    flush_s = float(spec.flush_s or 0.0)
    # Pushes fall on the window's grid (start + k * flush_s), where the coordinator's interim
    # checks look just after, so a check sees runs up to its own moment, not one period older.
    next_flush = start_at + flush_s if flush_s > 0 else float("inf")
    # Runs not yet pushed ahead of the record, with their probe index and version: the pair
    # names the probe slot, so a re-delivered batch pushes the same ids and counts each once.
    unpushed: list[tuple[int, str, Future[TransactionResult]]] = []
    push_failed = False
    judged = False

    def heartbeat() -> None:
        nonlocal last_beat
        if now() - last_beat >= HEARTBEAT_S:
            last_beat = now()
            # A missed beat while Redis is away only risks a second runner, which records once.
            with contextlib.suppress(StoreError, redis.RedisError):
                store.refresh_claim(rid, window, batch_id, owner, CLAIM_TTL_S)

    def flush() -> None:
        """Push finished runs for the coordinator's interim checks (spec.flush_s)."""
        nonlocal next_flush, unpushed, push_failed, judged
        if judged or now() < next_flush:
            return
        next_flush = start_at + flush_s * ((now() - start_at) // flush_s + 1)
        finished: list[tuple[int, str, Future[TransactionResult]]] = []
        running: list[tuple[int, str, Future[TransactionResult]]] = []
        for u in unpushed:
            (finished if u[2].done() else running).append(u)
        entries = [
            (f"{batch_id}:{k}:{version}", f.result())
            for k, version, f in finished
            if f.exception() is None
        ]
        try:
            status = store.record_interim(rid, window, entries)
        except (StoreError, redis.RedisError) as exc:
            # Best effort: the batch record is what counts; these runs go again next time.
            log.log(
                logging.DEBUG if push_failed else logging.WARNING,
                "batch %s: cannot push interim results (%s); the batch record is unaffected",
                batch_id,
                exc,
            )
            push_failed = True
            return
        unpushed = running
        # The window was judged early (an interim check rolled back): the record will be
        # refused, so probing on would only load a canary that no longer gets traffic.
        judged = status < 0

    def tick() -> None:
        heartbeat()
        flush()

    # Bounds this batch's share of the process pool, so one batch cannot crowd out the others.
    slots = threading.BoundedSemaphore(
        max(len(targets), min(int(spec.concurrency), spec.count) * len(targets))
    )

    def one(target: Target) -> TransactionResult:
        try:
            return run_transaction(tx, target, session=POOL.session())
        finally:
            slots.release()

    pool = POOL.executor()
    started = now()
    futures: list[Future[TransactionResult]] = []
    for k, off in enumerate(offsets):
        due = start_at + off
        tick()
        while not judged and (left := due - now()) > 0:
            sleep(max(0.0, min(left, HEARTBEAT_S, next_flush - now())))
            tick()
        if judged:
            log.info(
                "batch %s: window judged early; stopped after %d of %d", batch_id, k, len(offsets)
            )
            break
        # Alternate which version goes first so neither is always the one that waits.
        for target in targets if k % 2 == 0 else targets[::-1]:
            while not slots.acquire(timeout=HEARTBEAT_S):
                tick()
            futures.append(pool.submit(one, target))
            unpushed.append((k, target.version, futures[-1]))
    pending = set(futures)
    while pending:
        # Wakes once per heartbeat, not at every completion: waking per completion re-registers
        # on every pending future, a cost that grows with the square of the batch.
        _, pending = wait(pending, timeout=HEARTBEAT_S)
        tick()
    results = [f.result() for f in futures]
    meta = {
        "environment": spec.environment,
        "host": host_name(),
        "source": source_address(targets[-1].base_url) if targets else None,
        "pid": os.getpid(),
        "runs": len(results),
        "started": started,
        "finished": now(),
    }
    status = _record(store, spec, results, meta, sleep)
    total = int(spec.window_batches or 0)
    if status > 0 and on_complete is not None and total and status >= total:
        on_complete()
    ok = sum(1 for r in results if r.ok)
    outcome = {-1: "refused: the window was judged without it", 0: "duplicate"}.get(status)
    summary: dict[str, Any] = {"batch_id": batch_id, "recorded": status > 0, "runs": len(results)}
    summary["ok"] = ok
    if outcome:
        summary["skipped"] = outcome
    if judged:
        summary["stopped_early"] = True
    return summary
