"""Running one probe batch on a worker: pacing over the window, concurrency, idempotent recording."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import requests

from canary.probing import Target, run_transaction
from canary.probing.result import TransactionResult
from canary.rollout import state as st
from canary.rollout.controller import window_position
from canary.store import Store
from canary.transactions import Transaction

log = logging.getLogger(__name__)


def probe_offsets(
    slot: int, slots: int, count: int, series_size: int, spread_s: float
) -> list[float]:
    """Seconds after the window start at which this batch's probes begin.

    The series' probes are spaced evenly over the spread; batch ``slot`` of ``slots`` takes
    every ``slots``-th one, so batches interleave instead of each making a burst.
    """
    return [((slot + k * slots) / max(series_size, 1)) * spread_s for k in range(count)]


def run_batch(
    store: Store,
    spec: dict[str, Any],
    *,
    now: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Run the batch described by ``spec`` (see controller._dispatch_window) and record it once."""
    rid, window, batch_id = spec["rollout_id"], spec["window"], spec["batch_id"]
    record = store.load_rollout(rid)
    # The coordinator may dispatch a batch before it saves the window it belongs to, so only a
    # window *later* than the batch's makes the batch stale.
    if (
        record is None
        or st.is_final(record["state"])
        or (record["step"], record["attempt"]) > window_position(window)
    ):
        return {"batch_id": batch_id, "skipped": "rollout finished or moved on"}
    if batch_id in store.recorded_batches(rid, window):
        return {"batch_id": batch_id, "skipped": "already recorded"}
    tx_def = next(t for t in record["transactions"] if t["transaction_name"] == spec["transaction"])
    tx = Transaction.model_validate(tx_def)
    targets = []
    for name in spec["versions"]:
        version = record["config"][name]
        targets.append(
            Target(
                version=name, base_url=version["url"], headers=dict(version.get("headers") or {})
            )
        )
    offsets = probe_offsets(
        spec["slot"], spec["slots"], spec["count"], spec["series_size"], spec["spread_s"]
    )
    local = threading.local()

    def one(target: Target) -> TransactionResult:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        return run_transaction(tx, target, session=session)

    futures: list[Future[TransactionResult]] = []
    in_flight = max(
        len(targets), min(int(spec.get("concurrency", 8)), spec["count"]) * len(targets)
    )
    with ThreadPoolExecutor(max_workers=in_flight) as pool:
        for k, off in enumerate(offsets):
            wait = spec["start_at"] + off - now()
            if wait > 0:
                sleep(wait)
            # Alternate which version goes first so neither is always the one that waits.
            for target in targets if k % 2 == 0 else targets[::-1]:
                futures.append(pool.submit(one, target))
    results = [f.result() for f in futures]
    added = store.record_batch(rid, window, batch_id, results)
    ok = sum(1 for r in results if r.ok)
    return {"batch_id": batch_id, "recorded": added, "runs": len(results), "ok": ok}
