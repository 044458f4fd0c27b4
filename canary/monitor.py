"""Continuous synthetic monitoring of stable versions: the source of each service's history."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from pydantic import BaseModel, ConfigDict, Field, field_validator

from canary.documents import load_document, parse_model
from canary.errors import ConfigError, Problem
from canary.probing import Target, TransactionResult, run_transaction
from canary.settings import load_settings
from canary.store import Store
from canary.transactions import Transaction

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
MIN_INTERVAL_S = 1.0
MAX_RUNS = 100

# send(service, queue, tick, expires_s): hands one monitor's probe to a worker.
Send = Callable[[str, str, float, float], None]


class MonitorFile(BaseModel):
    """A monitor definition file: which stable version to probe, with what, and how often."""

    model_config = ConfigDict(extra="forbid")

    service: str = Field(description="Service name; its history is kept under this name.")
    url: str = Field(description="Base URL of the service's stable version.")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Headers sent on every request."
    )
    transactions: list[str] = Field(
        min_length=1, description="Transaction files, relative to this file."
    )
    interval: float = Field(
        default=60.0, ge=MIN_INTERVAL_S, le=24 * 3600, description="Seconds between ticks."
    )
    runs: int = Field(default=1, ge=1, le=MAX_RUNS, description="Runs of each transaction a tick.")
    environment: str = Field(
        default="default", description="Probe environment (queue) whose workers run it."
    )

    @field_validator("service", "environment")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"{v!r} must be 1-63 letters, digits, '-', '_' or '.'")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v


def load_monitor(path: str | Path) -> dict[str, Any]:
    """Read and validate a monitor file and its transactions; returns the record to store."""
    from canary.transactions import load_transaction

    doc = load_document(path)
    spec = parse_model(MonitorFile, doc)
    problems: list[Problem] = []
    txs: list[dict[str, Any]] = []
    names: dict[str, int] = {}
    for i, rel in enumerate(spec.transactions):
        try:
            tx = load_transaction(Path(path).parent / rel)
        except ConfigError as exc:
            problems.extend(exc.problems or [doc.problem(("transactions", i), str(exc))])
            continue
        if tx.name in names:
            msg = f"transaction {tx.name!r} is already listed at transactions[{names[tx.name]}]"
            problems.append(doc.problem(("transactions", i), msg))
        names[tx.name] = i
        txs.append(tx.model_dump(mode="json"))
    if problems:
        raise ConfigError(problems)
    return {
        "service": spec.service,
        "url": spec.url,
        "headers": spec.headers,
        "interval": spec.interval,
        "runs": spec.runs,
        "environment": spec.environment,
        "transactions": txs,
        "added_at": time.time(),
    }


def next_tick(last: float | None, interval: float, now: float) -> float | None:
    """The tick to take at ``now`` after the one at ``last``, or None when none is due.

    Ticks keep their cadence (last + interval) so a late one does not shift the series; after a
    whole missed interval (or a clock that went back) the series restarts at ``now``. The store
    applies the same rule atomically on Redis's clock (Store.claim_monitor_tick).
    """
    if last is None or now - last >= 2 * interval or now < last - interval:
        return now
    if now - last >= interval:
        return last + interval
    return None


def queue_of(record: dict[str, Any]) -> str:
    return f"{load_settings().probe_queue_prefix}.{record.get('environment') or 'default'}"


def tick(store: Store, send: Send) -> list[str]:
    """Send a probe for every monitor whose interval has elapsed; returns those services.

    Each tick is claimed in Redis first, so two beats (or a late tick and a prompt one) never
    probe the same interval twice.
    """
    sent: list[str] = []
    for record in store.list_monitors():
        service = record["service"]
        interval = float(record["interval"])
        at = store.claim_monitor_tick(service, interval)
        if at is None:
            continue
        # A probe still queued after its interval is stale: the next tick supersedes it.
        send(service, queue_of(record), at, interval)
        sent.append(service)
    return sent


def probe(
    store: Store, service: str, *, session: requests.Session | None = None
) -> list[TransactionResult]:
    """Run the monitor's transactions against its stable URL and append them to the history."""
    record = store.load_monitor(service)
    if record is None:
        return []  # removed since the tick was sent
    target = Target(version="stable", base_url=record["url"], headers=dict(record["headers"]))
    txs = [Transaction.model_validate(t) for t in record["transactions"]]
    sess = session or requests.Session()
    results: list[TransactionResult] = []
    try:
        for _ in range(int(record["runs"])):
            for tx in txs:
                results.append(run_transaction(tx, target, session=sess))
    finally:
        if session is None:
            sess.close()
    store.add_history(service, results)
    failed = sum(1 for r in results if not r.ok)
    if failed:
        log.warning("monitor %s: %d of %d stable runs failed", service, failed, len(results))
    return results
