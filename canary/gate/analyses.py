"""Gate analyses: one rollout of canary's engine per caller's key, started once, then polled.

The gate never moves traffic: every analysis it starts is a rollout with the ``noop`` router,
run by the fleet like any other (same Redis, same engine, same workers), so it shows in
``canary rollout status``, the report and the exporter. Its id is derived from the caller's key,
so any number of gate replicas agree on it and the record's SET NX makes the start unique.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from canary.errors import ConfigError, StoreError
from canary.gate.config import GateConfig
from canary.gate.verdict import Verdict, from_record, start_failed, starting
from canary.rollout.config import RolloutConfig, RouterSpec, SLOSpec, VersionSpec
from canary.store import Store

# A start sent to the fleet that no worker has acted on by then is a failure, not a stall.
START_DEADLINE_S = 60.0
_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class AnalysisRequest:
    """What the gate needs to start (or find) one analysis, whichever controller asked."""

    key: str  # identifies the analysis: equal keys, same analysis
    name: str  # shown to operators: the rollout's name
    service: str | None
    stable_url: str
    canary_url: str
    transactions: tuple[str, ...]
    slo: SLOSpec | None = None


def rollout_id(request: AnalysisRequest) -> str:
    """``gate-<name>-<hash of the key>``: readable, and the same for every gate replica."""
    digest = hashlib.sha256(request.key.encode()).hexdigest()[:12]
    slug = _SLUG.sub("-", request.name).strip("-.")[:40] or "analysis"
    return f"gate-{slug}-{digest}"


def _config_name(name: str) -> str:
    slug = _SLUG.sub("-", name).strip("-._")[:63]
    return slug or "gate-analysis"


def build_rollout(
    request: AnalysisRequest, gate: GateConfig
) -> tuple[RolloutConfig, list[dict[str, Any]]]:
    """The rollout the fleet runs for ``request``: the gate's defaults, the caller's versions.

    Raises ConfigError (a 400 for the caller) for bad URLs or unknown transactions.
    """
    d = gate.defaults
    transactions = gate.transactions(list(request.transactions))
    slo = d.slo
    if request.slo is not None:
        # The caller's SLO overrides the gate's field by field: only what it sets.
        slo = SLOSpec.model_validate(
            {**d.slo.model_dump(), **request.slo.model_dump(exclude_unset=True)}
        )
    try:
        config = RolloutConfig(
            name=_config_name(request.name),
            service=_config_name(request.service) if request.service else None,
            stable=VersionSpec(url=request.stable_url),
            canary=VersionSpec(url=request.canary_url),
            transactions=list(request.transactions),
            schedule=d.schedule,
            probes=d.probes,
            slo=slo,
            analysis=d.analysis,
            # The controller that called us moves traffic; the gate only judges.
            router=RouterSpec(type="noop"),
            notifiers=d.notifiers,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return config, transactions


class Starter(Protocol):
    """Hands a new rollout to the fleet (Celery's ``canary.start_rollout`` in production)."""

    def start(
        self, config: RolloutConfig, transactions: list[dict[str, Any]], rid: str
    ) -> None: ...


class CeleryStarter:
    """Sends ``canary.start_rollout`` by name, as any outside service may."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url

    def start(self, config: RolloutConfig, transactions: list[dict[str, Any]], rid: str) -> None:
        from canary.local.flower import task_argsrepr
        from workers.app import client

        args = [config.model_dump(mode="json"), transactions, rid]
        try:
            with client(self.redis_url) as app:
                app.send_task(
                    "canary.start_rollout",
                    args=args,
                    # A newer analysis of the same service (a new canary revision) takes over
                    # from one still running: the fleet runs one rollout per service.
                    kwargs={"replace": True},
                    argsrepr=task_argsrepr("canary.start_rollout", args),
                    # Never wait long on a broker that is away: the caller gets a 503 instead.
                    retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
                )
        except Exception as exc:
            raise StoreError(f"cannot send the analysis to the fleet: {exc}") from None


@dataclass
class _Tail:
    """The newest decision's numbers of one rollout, read from its events as they come."""

    after: str = "0-0"
    metrics: dict[str, Any] = field(default_factory=dict)


class Analyses:
    """Start-or-poll over the store; safe to call from many threads at once."""

    def __init__(
        self,
        store: Store,
        gate: GateConfig,
        starter: Starter,
        *,
        clock: Callable[[], float] = time.time,
        start_deadline_s: float = START_DEADLINE_S,
    ) -> None:
        self.store = store
        self.gate = gate
        self.starter = starter
        self.clock = clock
        self.start_deadline_s = start_deadline_s
        self._lock = threading.Lock()
        self._sent: dict[str, float] = {}  # rollout id → when this process asked for its start
        self._tails: dict[str, _Tail] = {}

    def ensure(self, request: AnalysisRequest) -> Verdict:
        """The analysis of ``request``, started first if nobody has started it yet."""
        rid = rollout_id(request)
        record = self.store.load_rollout(rid)
        if record is not None:
            return self._verdict(request.name, record)
        with self._lock:
            ours = rid not in self._sent
            if ours:
                # Claimed before sending, so that polls meanwhile wait rather than send again;
                # the send itself runs outside the lock (a slow broker delays only this call).
                self._sent[rid] = self.clock()
                self._forget_old()
            sent = self._sent[rid]
        if ours:
            try:
                # Validated here, before anything is sent: a bad request is the caller's 400.
                config, transactions = build_rollout(request, self.gate)
                self.starter.start(config, transactions, rid)
            except BaseException:
                with self._lock:
                    self._sent.pop(rid, None)
                raise
        record = self.store.load_rollout(rid)
        if record is not None:
            return self._verdict(request.name, record)
        waited = self.clock() - sent
        if waited > self.start_deadline_s:
            return start_failed(request.name, rid, waited)
        return starting(request.name, rid, waited)

    def poll(self, request: AnalysisRequest) -> Verdict | None:
        """The analysis of ``request`` if it was started, else None (never starts one)."""
        record = self.store.load_rollout(rollout_id(request))
        return None if record is None else self._verdict(request.name, record)

    def wait_events(self, request: AnalysisRequest, after: str, block_ms: int) -> str:
        """Block until the analysis records something after event ``after`` (or time is up)."""
        events = self.store.read_events(rollout_id(request), after, block_ms=block_ms, count=100)
        return events[-1][0] if events else after

    def _verdict(self, name: str, record: dict[str, Any]) -> Verdict:
        return from_record(name, record, self._last_decision(record["id"]), now=self.clock())

    def _last_decision(self, rid: str) -> dict[str, Any]:
        with self._lock:
            tail = self._tails.setdefault(rid, _Tail())
            after = tail.after
        events = self.store.read_events(rid, after, count=1000)
        metrics = None
        for _eid, event in events:
            if event["type"] == "decision":
                metrics = event["data"].get("metrics") or {}
        with self._lock:
            if events:
                tail.after = events[-1][0]
            if metrics is not None:
                tail.metrics = metrics
            return tail.metrics

    def _forget_old(self) -> None:
        # Bounded memory: starts older than the deadline have either a record or a verdict.
        cutoff = self.clock() - 10 * self.start_deadline_s
        for rid in [r for r, t in self._sent.items() if t < cutoff]:
            del self._sent[rid]
        while len(self._tails) > 1000:
            self._tails.pop(next(iter(self._tails)))
