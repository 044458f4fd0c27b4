"""The rollout controller: what the coordinator does at each step, and what a decision changes.

One call per step, never a long loop. ``advance`` sets the weight and fans the step's probes out;
``analyze`` waits for their results, asks the judge, and applies the decision by scheduling the
next call. Both take the rollout's lock, read the record, return early when there is nothing to
do (a finished rollout, a stale or re-delivered task), and write the record once at the end.
``check`` looks at the results workers push while the step runs, every few seconds, and rolls
back at once when the sequential engine already has the evidence (it only ever rolls back).
Celery-free: the caller passes a Dispatcher that schedules the next tasks.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from canary.analysis.decision import Decision, JudgeInput
from canary.analysis.engine import AnalysisEngine, EngineSettings
from canary.analysis.judge import get_judge
from canary.analysis.metrics import summarize_version
from canary.analysis.slo import SLO
from canary.errors import CanaryError, RouterError
from canary.notifiers import Alert, build_notifier, deliver
from canary.probing.result import TransactionResult
from canary.rollout import state as st
from canary.rollout.config import RolloutConfig, effective_slo
from canary.routers import RouteContext, Router, build_router
from canary.store import Store

log = logging.getLogger(__name__)

# How long analysis waits past the end of a window for late batches before judging without them.
STRAGGLER_GRACE_S = 30.0
# A batch holds a worker slot while it paces its probes over the window, so a window is cut into
# at most this many batches (raising batch_size when needed): more would queue behind the
# worker slots and start late, in a burst. Larger batches cost nothing, since a worker's probe
# threads are shared by all its batches. Override with CANARY_MAX_BATCHES.
MAX_BATCHES_PER_WINDOW = 48
# How often a paused rollout looks again for operator commands or the end of its pause.
PAUSE_RECHECK_S = 2.0
# How often a waiting analysis or a paused rollout looks again.
RECHECK_S = 1.0
# Workers push their results on the window's grid (every check interval from its start); an
# interim check looks this long after each grid point, so the pushes of that moment are in.
CHECK_LAG_S = 1.0
DECISIONS_KEPT = 200
# Rollouts this process coordinated lately, kept so that it can still send their traffic to
# stable while Redis, which holds their records, is unreachable (see rollback_offline).
RECENT_KEPT = 256
_recent: dict[str, dict[str, Any]] = {}


def _remember(record: dict[str, Any]) -> None:
    _recent.pop(record["id"], None)
    if st.is_final(record["state"]):
        return
    snapshot = {k: record.get(k) for k in ("id", "service", "config", "step", "weight", "state")}
    # Another coordinator may have finished the rollout since (even promoted it), so a memory
    # is trusted only for about a step: a running rollout is seen at least once per step.
    interval = float(record.get("window_interval") or record["config"]["schedule"]["step_interval"])
    snapshot["trust_until"] = time.time() + interval + STRAGGLER_GRACE_S + 120.0
    _recent[record["id"]] = snapshot
    while len(_recent) > RECENT_KEPT:
        _recent.pop(next(iter(_recent)))


def recent_rollouts() -> list[str]:
    """Ids of the unfinished rollouts this process coordinated lately (newest last)."""
    now = time.time()
    return [rid for rid, snap in _recent.items() if snap["trust_until"] >= now]


def rollback_offline(ctx: Context, rollout_id: str) -> str | None:
    """Send a rollout's traffic to stable from what this process remembers, without Redis.

    Returns None when done, else why it could not; the record is written later by fail_safe.
    """
    snapshot = _recent.get(rollout_id)
    if snapshot is None or snapshot["trust_until"] < time.time():
        return "this process has not coordinated the rollout lately"
    try:
        _router(ctx, snapshot).rollback(_route_ctx(snapshot))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    snapshot["weight"] = 0
    return None


class Dispatcher(Protocol):
    """Schedules the tasks that carry a rollout forward (Celery in production)."""

    def probe(self, batch: dict[str, Any], queue: str) -> None: ...

    def analyze(self, rollout_id: str, window: str, countdown: float) -> None: ...

    def check(self, rollout_id: str, window: str, countdown: float) -> None: ...

    def advance(self, rollout_id: str, step: int, attempt: int, countdown: float) -> None: ...


@dataclass
class Context:
    """What the controller works with: the store, the dispatcher, the clock and the probe queues."""

    store: Store
    dispatcher: Dispatcher
    now: Callable[[], float] = time.time
    queue_prefix: str = "canary.probe"
    routers: dict[str, Router] = field(default_factory=dict)


def max_batches() -> int:
    """How many batches a window may be cut into (CANARY_MAX_BATCHES, default 48)."""
    try:
        return max(1, int(os.environ.get("CANARY_MAX_BATCHES") or MAX_BATCHES_PER_WINDOW))
    except ValueError:
        return MAX_BATCHES_PER_WINDOW


def window_name(step: int, attempt: int) -> str:
    """The name of probing window (step, attempt): ``s3a1``."""
    return f"s{step}a{attempt}"


def window_position(window: str) -> tuple[int, int]:
    """``"s3a1"`` → ``(3, 1)``: windows order by step, then attempt."""
    step, _, attempt = window[1:].partition("a")
    return int(step), int(attempt)


def new_rollout_id(name: str) -> str:
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"


def create(
    ctx: Context,
    config: RolloutConfig,
    transactions: list[dict[str, Any]],
    *,
    rollout_id: str | None = None,
) -> dict[str, Any]:
    """Persist a new rollout and schedule its first step."""
    now = ctx.now()
    since = now - config.analysis.history_window
    names = [t["transaction_name"] for t in transactions]
    has_history = any(ctx.store.history(config.service_name, n, since=since) for n in names)
    # A weight-0 step probes both versions before traffic moves: the canary's isolated check,
    # and, for a service with no recent stable history, the baseline the analysis needs.
    probe_first = config.schedule.isolated_check or not has_history
    weights = ([0] if probe_first else []) + config.schedule.weights()
    offset = int(probe_first)
    # A pause after traffic step i waits before record step i + 1 + offset.
    pauses = {str(i + 1 + offset): d for i, d in config.schedule.pauses().items()}
    record: dict[str, Any] = {
        "id": rollout_id or new_rollout_id(config.name),
        "name": config.name,
        "service": config.service_name,
        "created_at": now,
        "updated_at": now,
        "config": config.model_dump(mode="json"),
        "transactions": transactions,
        "slo": effective_slo(config, transactions).to_dict(),
        "weights": weights,
        "pauses": pauses,
        "baseline": not has_history,
        "state": "running",
        "outcome": None,
        "step": 0,
        "attempt": 0,
        "weight": 0,
        "window": None,
        "canary_failures": 0,
        "alerts_sent": [],
        "decisions": [],
        "fence": 0,
    }
    ctx.store.create_rollout(record)
    ctx.store.append_event(
        record["id"],
        "created",
        {
            "name": config.name,
            "service": record["service"],
            "weights": weights,
            "slo": record["slo"],
            "baseline": not has_history,
        },
    )
    if "0" in pauses:
        _enter_pause(ctx, record, 0)
        ctx.store.save_rollout(record)
    ctx.dispatcher.advance(record["id"], 0, 0, 0.0)
    return record


def _enter_pause(ctx: Context, record: dict[str, Any], step: int) -> None:
    """Begin the schedule's pause before ``step``: timed, or until an operator acts."""
    duration = record["pauses"][str(step)]
    if duration is None:
        _set_state(
            ctx,
            record,
            "paused",
            Decision(
                "hold", ["a pause in the schedule: `canary rollout resume` or `promote` to go on"]
            ),
        )
    else:
        record["pause_until"] = ctx.now() + duration
        ctx.store.append_event(record["id"], "pause", {"before_step": step, "seconds": duration})


# --- advance: set the weight, fan the step out ---------------------------------------------------


def advance(ctx: Context, rollout_id: str, step: int, attempt: int) -> str:
    """Start probing window (step, attempt). Returns a word saying what happened (for logs)."""
    with ctx.store.lock(rollout_id, wait_s=5.0) as fence:
        if fence is None:
            ctx.dispatcher.advance(rollout_id, step, attempt, RECHECK_S)
            return "locked"
        record = ctx.store.load_rollout(rollout_id)
        if record is None:
            return "unknown"
        _remember(record)
        if st.is_final(record["state"]):
            return "finished"
        if (record["step"], record["attempt"]) != (step, attempt) or record.get(
            "window"
        ) == window_name(step, attempt):
            return "stale"
        record["fence"] = fence
        if _apply_controls(ctx, record):
            return record["state"]
        if record["state"] == "paused":
            ctx.dispatcher.advance(rollout_id, step, attempt, PAUSE_RECHECK_S)
            return "paused"
        remaining = float(record.get("pause_until") or 0.0) - ctx.now()
        if remaining > 0:
            # Short hops rather than one long countdown, so operator commands act promptly.
            ctx.dispatcher.advance(rollout_id, step, attempt, min(remaining, PAUSE_RECHECK_S))
            return "pausing"
        record.pop("pause_until", None)
        weight = record["weights"][step]
        if not _set_weight(ctx, record, weight):
            return record["state"]
        _dispatch_window(ctx, record, step, attempt, weight)
        record["updated_at"] = ctx.now()
        ctx.store.save_rollout(record)
        return "probing"


def _set_weight(ctx: Context, record: dict[str, Any], weight: int) -> bool:
    """Move traffic and check it moved; on failure roll back (fail safe) and say so."""
    router = _router(ctx, record)
    try:
        router.set_weight(weight, _route_ctx(record))
        verified = router.verify_weight(weight, _route_ctx(record))
    except RouterError as exc:
        _finish(
            ctx,
            record,
            "failed",
            Decision("rollback", [f"router {router.name} failed to set weight {weight}%: {exc}"]),
        )
        return False
    if verified is False:
        _finish(
            ctx,
            record,
            "failed",
            Decision(
                "rollback", [f"router {router.name} reports a live weight other than {weight}%"]
            ),
        )
        return False
    record["weight"] = weight
    event: dict[str, Any] = {"weight": weight, "verified": verified, "router": router.name}
    # Routers that run commands say what the command printed; operators read it in the events.
    if getattr(router, "last_output", None):
        event["output"] = router.last_output  # type: ignore[attr-defined]
    ctx.store.append_event(record["id"], "weight", event)
    return True


def _dispatch_window(
    ctx: Context, record: dict[str, Any], step: int, attempt: int, weight: int
) -> None:
    cfg = RolloutConfig.model_validate(record["config"])
    window = window_name(step, attempt)
    interval = cfg.schedule.step_interval
    start = ctx.now()
    n = cfg.probes.per_step
    per_batch = cfg.probes.batch_size
    cap = max(1, max_batches() // max(1, len(record["transactions"])))
    batches_per_series = min(math.ceil(n / per_batch), cap)
    envs = cfg.probes.environments
    check_s = _check_interval(cfg)
    expected: list[str] = []
    ctx.store.add_window(record["id"], window)
    total = batches_per_series * len(record["transactions"])
    # Saved before any batch goes out, so every dispatched batch is either recorded or, once
    # the window is judged, accounted for as missing.
    ctx.store.set_expected(
        record["id"],
        window,
        {
            f"{window}.{tx['transaction_name']}.{j}": 2 * len(range(j, n, batches_per_series))
            for tx in record["transactions"]
            for j in range(batches_per_series)
        },
    )
    # Each batch probes stable and canary side by side at the same instants, so load on the
    # probing host or the network weighs on both alike and cannot pass for a regression.
    for tx in record["transactions"]:
        for j in range(batches_per_series):
            # Batches of one series interleave over the window so the analysis sees a time
            # series rather than bursts: batch j runs the probes j, j+m, j+2m, ...
            count = len(range(j, n, batches_per_series))
            env = envs[len(expected) % len(envs)]
            batch_id = f"{window}.{tx['transaction_name']}.{j}"
            expected.append(batch_id)
            batch: dict[str, Any] = {
                "rollout_id": record["id"],
                "window": window,
                "batch_id": batch_id,
                "versions": ["stable", "canary"],
                "transaction": tx["transaction_name"],
                "count": count,
                "slot": j,
                "slots": batches_per_series,
                "series_size": n,
                "start_at": start,
                # The whole interval: the last batch recorded starts the analysis at once,
                # so no slack has to be left for a fixed-time analysis to find them done.
                "spread_s": interval,
                "window_batches": total,
                "concurrency": cfg.probes.concurrency,
                "environment": env,
            }
            if check_s is not None:
                batch["flush_s"] = check_s
            ctx.dispatcher.probe(batch, f"{ctx.queue_prefix}.{env}")
    ctx.dispatcher.analyze(record["id"], window, interval)
    if check_s is not None:
        ctx.dispatcher.check(record["id"], window, check_s + CHECK_LAG_S)
    record.update(
        window=window, window_started_at=start, window_interval=interval, expected_batches=expected
    )
    ctx.store.append_event(
        record["id"],
        "step",
        {
            "step": step,
            "attempt": attempt,
            "weight": weight,
            "window": window,
            "batches": len(expected),
            "probes": n * 2 * len(record["transactions"]),
        },
    )


# --- analyze: judge the window, apply the decision ------------------------------------------------


def analyze(ctx: Context, rollout_id: str, window: str) -> str:
    """Judge a finished window and apply the decision."""
    with ctx.store.lock(rollout_id, wait_s=5.0) as fence:
        if fence is None:
            ctx.dispatcher.analyze(rollout_id, window, RECHECK_S)
            return "locked"
        record = ctx.store.load_rollout(rollout_id)
        if record is None:
            return "unknown"
        _remember(record)
        if (
            st.is_final(record["state"])
            or record.get("window") != window
            or record.get("judged") == window
        ):
            return "stale"
        record["fence"] = fence
        if _apply_controls(ctx, record):
            return record["state"]
        expected = set(record.get("expected_batches") or [])
        done = ctx.store.recorded_batches(rollout_id, window)
        missing = expected - done
        late_by = ctx.now() - (record["window_started_at"] + record["window_interval"])
        if missing and late_by < STRAGGLER_GRACE_S:
            # The last batch recorded wakes the analysis up; until the window ends this is only
            # the fallback for batches that never report, so it need not poll.
            ctx.dispatcher.analyze(rollout_id, window, max(RECHECK_S, -late_by))
            return "waiting"
        # Sealed before judging: a batch that reports later is refused, so the judged results
        # are exactly those of the batches recorded, and the others are accounted as missing.
        done = ctx.store.seal_window(rollout_id, window, sorted(expected))
        missing = expected - done
        decision = _judge(ctx, record, window, missing)
        decision = _hold_if_starved(ctx, record, window, decision)
        _apply(ctx, record, window, decision)
        return decision.action


def min_probed_share() -> float:
    """CANARY_MIN_PROBED_SHARE: the share of a step's planned runs below which it holds (0.6)."""
    try:
        return min(1.0, max(0.0, float(os.environ.get("CANARY_MIN_PROBED_SHARE") or 0.6)))
    except ValueError:
        return 0.6


def _hold_if_starved(
    ctx: Context, record: dict[str, Any], window: str, decision: Decision
) -> Decision:
    """Hold (and alert) rather than move on when the fleet probed too little of the step.

    Probe workers short of capacity drop the runs they cannot start in time (canary.fleet), so
    a step that looks healthy may be mostly unobserved; a rollback is never held back, and a
    hold says first that the fleet, not the canary, is short.
    """
    if decision.action not in ("increase", "promote", "hold"):
        return decision
    acc = ctx.store.window_accounting(record["id"], window)
    planned = sum(acc["expected"].values())
    share = acc["results"] / planned if planned else 1.0
    decision.metrics["probed_share"] = round(share, 4)
    if share >= min_probed_share():
        return decision
    reason = (
        f"probed {share:.0%} of the planned runs ({acc['results']} of {planned}) at weight "
        f"{record['weight']}%: add probe workers"
    )
    _alert(ctx, record, "starved", "probing starved", [reason], "warning")
    if decision.action == "hold":
        decision.reasons.insert(0, reason)
        return decision
    cfg = RolloutConfig.model_validate(record["config"])
    max_holds = (
        EngineSettings.from_dict(cfg.analysis.engine).max_holds
        if cfg.analysis.judge == "sequential"
        else cfg.analysis.max_holds
    )
    if record["attempt"] >= max_holds:
        reason += f"; held {record['attempt']} times (max {max_holds}): rolling back to fail safe"
        return Decision("rollback", [reason], metrics=decision.metrics)
    reason += "; holding rather than judging a partly observed step"
    return Decision("hold", [reason], alerts=decision.alerts, metrics=decision.metrics)


# --- check: interim looks while a window runs ----------------------------------------------------


def _check_interval(cfg: RolloutConfig) -> float | None:
    """Seconds between interim checks, or None when the rollout gets none.

    Only the sequential engine may look while a step runs (its tests stay valid however often
    they are looked at); the threshold judge decides at step ends only.
    """
    if cfg.analysis.judge != "sequential":
        return None
    every = EngineSettings.from_dict(cfg.analysis.engine).check_interval_s
    return every if every + CHECK_LAG_S < cfg.schedule.step_interval else None


def _running(record: dict[str, Any], window: str) -> bool:
    """Whether ``window`` is the rollout's current, not yet judged window."""
    return (
        not st.is_final(record["state"])
        and record.get("window") == window
        and record.get("judged") != window
    )


def check(ctx: Context, rollout_id: str, window: str, *, chain: bool = True) -> str:
    """Look at the results pushed so far in a running window; roll back now if they say so.

    ``chain`` schedules the next check on the window's grid; a check that a probe worker asked
    for after pushing a failed canary run (canary.fleet) passes False, so the chain stays one.

    Without the lock: the engine is a throwaway copy (the window's official results are
    observed into the persisted one by ``analyze``), so a look changes nothing unless it rolls
    back, and only then is the lock taken and the record re-read.
    """
    record = ctx.store.load_rollout(rollout_id)
    if record is None:
        return "unknown"
    if not _running(record, window):
        return "stale"
    cfg = RolloutConfig.model_validate(record["config"])
    every = _check_interval(cfg)
    now = ctx.now()
    elapsed = now - float(record["window_started_at"])
    left = float(record["window_interval"]) - elapsed
    if every is None or left <= 0:
        return "stale"  # analyze judges the window now
    engine = _engine(ctx, record, cfg, reuse=True)
    engine.observe(ctx.store.interim_results(rollout_id, window))
    decision = engine.decide(now, record["weight"], step_end=False, holds=record["attempt"])
    if decision.action != "rollback":
        if not chain:
            return "ok"
        # The next grid point, whatever this check's delay: checks do not drift off the pushes.
        wait = every * ((elapsed - CHECK_LAG_S) // every + 1) + CHECK_LAG_S - elapsed
        if wait < left:
            ctx.dispatcher.check(rollout_id, window, max(wait, RECHECK_S))
        return "ok"
    with ctx.store.lock(rollout_id, wait_s=5.0) as fence:
        if fence is None:
            ctx.dispatcher.check(rollout_id, window, RECHECK_S)
            return "locked"
        record = ctx.store.load_rollout(rollout_id)
        if record is None or not _running(record, window):
            return "stale"
        _remember(record)
        record["fence"] = fence
        # Sealed as at a step end, so batches still running are refused (they stop at their
        # next push); their results so far join the window's, so the evidence is not lost.
        expected = sorted(record.get("expected_batches") or [])
        done = ctx.store.seal_window(rollout_id, window, expected, keep_lookahead=True)
        results = ctx.store.window_results(rollout_id, window)
        canary = [r for r in results if r.version == "canary"]
        stable = [r for r in results if r.version == "stable"]
        _count_failures(record, canary)
        ctx.store.add_history(record["service"], stable)
        decision.reasons.insert(
            0, f"interim check {elapsed:.0f} s into the step at weight {record['weight']}%"
        )
        decision.metrics["interim"] = True
        decision.metrics["batches_cut_short"] = len(set(expected) - done)
        decision.metrics.setdefault("canary", _stats(canary))
        decision.metrics.setdefault("stable", _stats(stable))
        _apply(ctx, record, window, decision)
        return "rollback"


def _judge(ctx: Context, record: dict[str, Any], window: str, missing: set[str]) -> Decision:
    cfg = RolloutConfig.model_validate(record["config"])
    results = ctx.store.window_results(record["id"], window)
    canary = [r for r in results if r.version == "canary"]
    stable = [r for r in results if r.version == "stable"]
    names = [t["transaction_name"] for t in record["transactions"]]
    # The sequential engine reads the history itself, only when it is built (_engine).
    history = _history(ctx, record, cfg) if cfg.analysis.judge != "sequential" else []
    _count_failures(record, canary)
    weights = record["weights"]
    inp = JudgeInput(
        canary=canary,
        stable=stable,
        history=history,
        cumulative_canary_failures=record["canary_failures"],
        slo=SLO.from_dict(record["slo"]),
        weight=record["weight"],
        max_weight=weights[-1],
        step_index=record["step"],
        holds=record["attempt"],
        max_holds=cfg.analysis.max_holds,
        transactions=names,
        min_samples=cfg.analysis.min_samples,
    )
    decision = _decide(ctx, record, cfg, inp)
    if missing:
        decision.reasons.append(
            f"{len(missing)} of {len(record.get('expected_batches') or [])} probe batches did not report in time and were judged as missing data"
        )
    # Stable results feed the service's rolling history only after they were judged against it.
    ctx.store.add_history(record["service"], stable)
    decision.metrics.setdefault("canary", _stats(canary))
    decision.metrics.setdefault("stable", _stats(stable))
    return decision


def _history(ctx: Context, record: dict[str, Any], cfg: RolloutConfig) -> list[TransactionResult]:
    """Stable's history of the service before the current window (the judge's baseline)."""
    since = record["window_started_at"] - cfg.analysis.history_window
    history: list[TransactionResult] = []
    for tx in record["transactions"]:
        history.extend(
            h
            for h in ctx.store.history(record["service"], tx["transaction_name"], since=since)
            if h.t < record["window_started_at"]
        )
    return history


def _engine(
    ctx: Context, record: dict[str, Any], cfg: RolloutConfig, *, reuse: bool = False
) -> AnalysisEngine:
    """The rollout's sequential engine: from the record, else new (t0 = this window's start).

    The history is read only when the engine is built; after that its state carries the
    baseline, so reloading thousands of results every window would be waste. Until the first
    step end persists it, ``reuse`` (interim checks) takes the one this process built for the
    window: reading and parsing the whole history at every check was most of a control
    worker's time with ten rollouts on their first step (scripts/bench-scale, py-spy).
    """
    if record.get("engine"):
        return AnalysisEngine.from_state(record["engine"])
    key = (record["id"], float(record["window_started_at"]))
    if reuse and key in _first_engines:
        return AnalysisEngine.from_state(json.loads(_first_engines[key]))
    engine = AnalysisEngine(
        SLO.from_dict(record["slo"]),
        EngineSettings.from_dict(cfg.analysis.engine),
        [t["transaction_name"] for t in record["transactions"]],
        _history(ctx, record, cfg),
        t0=record["window_started_at"],
    )
    if reuse:
        # As JSON: an engine built from a state may share (and so change) its lists.
        _first_engines[key] = json.dumps(engine.to_state())
        while len(_first_engines) > RECENT_KEPT:
            _first_engines.pop(next(iter(_first_engines)), None)
    return engine


# (rollout id, window start) → state of the engine built from the history for that window.
_first_engines: dict[tuple[str, float], str] = {}


def _count_failures(record: dict[str, Any], canary: list[TransactionResult]) -> None:
    record["canary_failures"] = int(record.get("canary_failures", 0)) + sum(
        1 for r in canary if not r.ok
    )


def _decide(ctx: Context, record: dict[str, Any], cfg: RolloutConfig, inp: JudgeInput) -> Decision:
    """Ask the configured judge; the sequential engine keeps its evidence in the record."""
    if cfg.analysis.judge != "sequential":
        return get_judge(cfg.analysis.judge).decide(inp)
    engine = _engine(ctx, record, cfg)
    engine.observe(sorted([*inp.canary, *inp.stable], key=lambda r: r.t))
    decision = engine.decide(
        ctx.now(),
        record["weight"],
        step_end=True,
        holds=record["attempt"],
        final=record["weight"] >= inp.max_weight,
    )
    record["engine"] = engine.to_state()
    return decision


def _stats(results: list[TransactionResult]) -> dict[str, Any]:
    s = summarize_version(results, results[0].version if results else "")
    return (
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in vars(s).items()}
        if results
        else {"n": 0}
    )


def _apply(ctx: Context, record: dict[str, Any], window: str, decision: Decision) -> None:
    record["judged"] = window
    entry = {
        "window": window,
        "step": record["step"],
        "attempt": record["attempt"],
        "weight": record["weight"],
        **decision.to_dict(),
    }
    record["decisions"] = [
        *(record.get("decisions") or [])[-DECISIONS_KEPT + 1 :],
        {k: v for k, v in entry.items() if k != "metrics"},
    ]
    ctx.store.append_event(record["id"], "decision", entry)
    for alert_kind in decision.alerts:
        _alert(
            ctx,
            record,
            "error_budget" if "budget" in alert_kind else "failure",
            alert_kind,
            decision.reasons,
            "warning",
        )
    step, attempt = record["step"], record["attempt"]
    if decision.action == "rollback":
        _finish(ctx, record, "rolled_back", decision)
    elif decision.action == "promote" or (
        decision.action == "increase" and step + 1 >= len(record["weights"])
    ):
        _promote(ctx, record, decision)
    elif decision.action == "increase":
        record.update(step=step + 1, attempt=0)
        if str(step + 1) in (record.get("pauses") or {}):
            _enter_pause(ctx, record, step + 1)
        ctx.dispatcher.advance(record["id"], step + 1, 0, 0.0)
        ctx.store.save_rollout(record)
    else:  # hold: probe the same weight again
        record.update(attempt=attempt + 1)
        ctx.dispatcher.advance(record["id"], step, attempt + 1, 0.0)
        ctx.store.save_rollout(record)


def _promote(ctx: Context, record: dict[str, Any], decision: Decision) -> None:
    router = _router(ctx, record)
    try:
        router.promote(_route_ctx(record))
    except RouterError as exc:
        _finish(
            ctx,
            record,
            "failed",
            Decision(
                "rollback", [*decision.reasons, f"router {router.name} failed to promote: {exc}"]
            ),
        )
        return
    record["weight"] = 100
    version = record["config"]["canary"].get("version")
    _alert(
        ctx,
        record,
        "promotion",
        f"canary {version} promoted" if version else "canary promoted",
        decision.reasons,
        "info",
    )
    _set_state(ctx, record, "promoted", decision)


def _finish(ctx: Context, record: dict[str, Any], new_state: str, decision: Decision) -> None:
    """End the rollout with all traffic on stable; a router that fails is reported, not hidden."""
    router = _router(ctx, record)
    reasons = list(decision.reasons)
    try:
        router.rollback(_route_ctx(record))
        record["weight"] = 0
    except (RouterError, Exception) as exc:
        reasons.append(
            f"router {router.name} failed to roll back: {exc}; traffic may still reach the canary"
        )
        new_state = "failed"
    kind = "rollback" if new_state in ("rolled_back", "aborted") else "failure"
    if decision.predictive:
        kind = "predicted_breach"
    _alert(
        ctx,
        record,
        kind,
        f"rollout {new_state.replace('_', ' ')}; traffic back to stable",
        reasons,
        "critical",
    )
    _set_state(
        ctx,
        record,
        new_state,
        Decision("rollback", reasons, predictive=decision.predictive, metrics=decision.metrics),
    )


def _set_state(ctx: Context, record: dict[str, Any], new_state: str, decision: Decision) -> None:
    record["state"] = st.transition(record["state"], new_state)
    record["updated_at"] = ctx.now()
    if st.is_final(new_state):
        # A finished rollout must never be "rolled back" from memory later (it may be promoted).
        _recent.pop(record["id"], None)
        record["outcome"] = st.OUTCOME[new_state]
        record["finished_at"] = ctx.now()
        record["reasons"] = decision.reasons
        record["predictive"] = decision.predictive
    # Saved before the event is told, so whoever reads the record on that event sees the end.
    if ctx.store.save_rollout(record, finished=st.is_final(new_state)):
        ctx.store.append_event(
            record["id"],
            "state",
            {
                "state": new_state,
                "outcome": record.get("outcome"),
                "weight": record["weight"],
                "reasons": decision.reasons,
                "predictive": decision.predictive,
            },
        )


def fail_safe(ctx: Context, rollout_id: str, reason: str) -> None:
    """Called when a coordinator task failed for good: send traffic to stable and say why."""
    with ctx.store.lock(rollout_id, wait_s=10.0) as fence:
        record = ctx.store.load_rollout(rollout_id)
        if record is None or st.is_final(record["state"]):
            return
        record["fence"] = fence or record.get("fence", 0)
        _finish(ctx, record, "failed", Decision("rollback", [reason]))


def stuck_limit(record: dict[str, Any]) -> float:
    """How long a running rollout may go without progress before operators are told."""
    analysis = record["config"].get("analysis") or {}
    if analysis.get("stuck_after"):
        return float(analysis["stuck_after"])
    return 3 * float(record["config"]["schedule"]["step_interval"]) + STRAGGLER_GRACE_S


def check_stuck(ctx: Context, *, limit: int = 200) -> list[str]:
    """Alert (once per rollout) on running rollouts that made no progress for too long.

    Progress is a window starting or a state change; a timed pause in progress is not being
    stuck, and a rollout paused by an operator is waiting on purpose.
    """
    now = ctx.now()
    stuck = []
    for record in ctx.store.list_rollouts(limit=limit):
        if record["state"] != "running" or float(record.get("pause_until") or 0) > now:
            continue
        idle = now - max(
            float(record.get("updated_at") or 0), float(record.get("window_started_at") or 0)
        )
        if idle < stuck_limit(record):
            continue
        with ctx.store.lock(record["id"]) as fence:
            current = ctx.store.load_rollout(record["id"]) if fence is not None else None
            if current is None or current["state"] != "running":
                continue
            current["fence"] = fence
            reason = (
                f"no progress for {idle:.0f} s at step {current['step'] + 1}/{len(current['weights'])}"
                f" (weight {current['weight']}%); the limit is {stuck_limit(current):.0f} s — are the workers running?"
            )
            _alert(ctx, current, "stuck", "rollout stuck", [reason], "warning")
            ctx.store.save_rollout(current)
        stuck.append(record["id"])
    return stuck


# --- operator commands ----------------------------------------------------------------------------


def _apply_controls(ctx: Context, record: dict[str, Any]) -> bool:
    """Apply queued operator commands; True when one of them ended the rollout."""
    for command in ctx.store.pop_controls(record["id"]):
        ctx.store.append_event(record["id"], "command", {"command": command})
        if command == "abort":
            _finish(ctx, record, "aborted", Decision("rollback", ["aborted by an operator"]))
            return True
        if command == "promote":
            _promote(ctx, record, Decision("promote", ["promoted by an operator"]))
            return True
        if command == "pause" and record["state"] == "running":
            _set_state(ctx, record, "paused", Decision("hold", ["paused by an operator"]))
        elif command == "resume" and record.pop("pause_until", None) is not None:
            ctx.store.append_event(record["id"], "pause", {"ended": "resumed by an operator"})
        elif command == "resume" and record["state"] == "paused":
            _set_state(ctx, record, "running", Decision("hold", ["resumed by an operator"]))
    return False


# --- plumbing -------------------------------------------------------------------------------------


def _router(ctx: Context, record: dict[str, Any]) -> Router:
    spec = record["config"]["router"]
    key = json.dumps(spec, sort_keys=True)
    if key not in ctx.routers:
        ctx.routers[key] = build_router(
            spec["type"], {k: v for k, v in spec.items() if k != "type"}
        )
    return ctx.routers[key]


def _route_ctx(record: dict[str, Any]) -> RouteContext:
    cfg = record["config"]
    return RouteContext(
        rollout_id=record["id"],
        service=record["service"],
        stable=cfg["stable"],
        canary=cfg["canary"],
        step=record["step"],
    )


def _alert(
    ctx: Context, record: dict[str, Any], kind: str, summary: str, reasons: list[str], severity: str
) -> None:
    alert = Alert(
        kind=kind,  # type: ignore[arg-type]
        rollout_id=record["id"],
        service=record["service"],
        stable_version=record["config"]["stable"].get("version"),
        canary_version=record["config"]["canary"].get("version"),
        weight=int(record["weight"]),
        summary=summary,
        reasons=list(reasons),
        severity=severity,  # type: ignore[arg-type]
    )
    if alert.dedupe_key in record.get("alerts_sent", []):
        return
    record.setdefault("alerts_sent", []).append(alert.dedupe_key)
    notifiers = []
    for spec in record["config"].get("notifiers") or []:
        try:
            notifiers.append(
                build_notifier(spec["type"], {k: v for k, v in spec.items() if k != "type"})
            )
        except CanaryError as exc:
            log.warning("notifier %s unusable: %s", spec.get("type"), exc)
    failed = deliver(notifiers, alert)
    ctx.store.append_event(record["id"], "alert", {**alert.to_dict(), "failed_channels": failed})
