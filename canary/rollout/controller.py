"""The rollout controller: what the coordinator does at each step (advance, analyze, check).

One call per step, never a long loop. ``advance`` sets the weight and fans the step's probes out;
``analyze`` waits for their results, asks the judge, and applies the decision by scheduling the
next call. Both take the rollout's lock, read the record, return early when there is nothing to
do (a finished rollout, a stale or re-delivered task), and write the record once at the end.
``check`` looks at the results workers push while the step runs, every few seconds, and rolls
back at once when a judge that may look mid-step already has the evidence (it only ever rolls
back). Celery-free: the caller passes a Dispatcher that schedules the next tasks.

What a decision changes and how a rollout ends is ``outcome``; operator commands and pauses are
``operator``; acting without Redis is ``offline``; stuck rollouts are ``stuck``.

Long because it reads as a list: each of the three entry points and the step functions it
calls, in order, as Argo Rollouts' ``rolloutCanary`` does.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import uuid
from collections.abc import Sequence
from typing import Any

from canary.analysis.decision import Decision, JudgeSession, JudgeSetup
from canary.analysis.engine import EngineSettings
from canary.analysis.judge import get_rollout_judge
from canary.analysis.metrics import summarize_version
from canary.errors import ConfigError
from canary.probing.result import TransactionResult
from canary.rollout import offline, operator, outcome
from canary.rollout.config import RolloutConfig, effective_slo
from canary.rollout.context import Context, Dispatcher, route_context, router_for
from canary.rollout.engines import SESSIONS, CheckSession
from canary.rollout.offline import RECENT_KEPT, recent_rollouts, rollback_offline
from canary.rollout.outcome import DECISIONS_KEPT, fail_safe
from canary.rollout.record import RolloutRecord
from canary.rollout.stuck import check_stuck, stuck_limit
from canary.rollout.windows import (
    MAX_BATCHES_PER_WINDOW,
    STRAGGLER_GRACE_S,
    BatchSpec,
    VersionTarget,
    max_batches,
    plan_window,
    window_name,
    window_position,
)

__all__ = [
    "DECISIONS_KEPT",
    "MAX_BATCHES_PER_WINDOW",
    "RECENT_KEPT",
    "STRAGGLER_GRACE_S",
    "Context",
    "Dispatcher",
    "advance",
    "analyze",
    "check",
    "check_stuck",
    "create",
    "fail_safe",
    "max_batches",
    "new_rollout_id",
    "recent_rollouts",
    "rollback_offline",
    "stuck_limit",
    "window_name",
    "window_position",
]

# How often a paused rollout looks again for the end of its pause (commands act at once).
PAUSE_RECHECK_S = 2.0
# How often a waiting analysis or a locked task looks again.
RECHECK_S = 1.0
# A step judged less than this before its end starts the next one at once, in the same task;
# earlier, a task is sent for the end (a hop costs more than this wait).
ADVANCE_INLINE_S = 0.2
# Workers push their results on the window's grid (every check interval from its start); an
# interim check looks this long after each grid point, so the pushes of that moment are in.
CHECK_LAG_S = 1.0


def new_rollout_id(name: str) -> str:
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"


def create(
    ctx: Context,
    config: RolloutConfig,
    transactions: list[dict[str, Any]],
    *,
    rollout_id: str | None = None,
    replace: bool = False,
    retry_of: str | None = None,
) -> dict[str, Any]:
    """Persist a new rollout and schedule its first step; returns the record as JSON.

    A service is steered by one rollout at a time: while one runs, another is refused with a
    ConfigError naming it, unless ``replace``: then the running one is aborted first (its
    record says by which rollout) and the new one takes its place. ``retry_of`` names the ended
    rollout this one starts again (both records say so).
    """
    now = ctx.now()
    rid = rollout_id or new_rollout_id(config.name)
    service = config.service_name
    holder = ctx.store.take_service(service, rid)
    replaced: str | None = None
    if holder is not None and replace:
        operator.replace(ctx, holder, rid)
        replaced = holder
        holder = ctx.store.take_service(service, rid, replacing=holder)
    if holder is not None:
        raise ConfigError(
            f"service {service!r} already has rollout {holder} running; wait for it, abort it "
            "(`canary rollout abort`), or replace it (`canary rollout start --replace`)"
        )
    try:
        record = _new_record(ctx, config, transactions, rid, now)
        record.replaces = replaced
        record.retry_of = retry_of
        ctx.store.create_record(record)
    except Exception:
        ctx.store.release_service(service, rid)
        raise
    ctx.store.append_event(
        record.id,
        "created",
        {
            "name": config.name,
            "service": service,
            "weights": record.weights,
            "slo": record.slo.to_dict(),
            "baseline": record.baseline,
            **({"replaces": replaced} if replaced else {}),
            **({"retry_of": retry_of} if retry_of else {}),
        },
    )
    if retry_of:
        ctx.store.append_event(retry_of, "retried", {"by": record.id})
    if "0" in record.pauses:
        operator.enter_pause(ctx, record, 0)
        outcome.save(ctx, record)
    ctx.dispatcher.advance(record.id, 0, 0, 0.0)
    return record.to_dict()


def _new_record(
    ctx: Context, config: RolloutConfig, transactions: list[dict[str, Any]], rid: str, now: float
) -> RolloutRecord:
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
    return RolloutRecord(
        id=rid,
        name=config.name,
        service=config.service_name,
        config=config,
        transactions=transactions,
        slo=effective_slo(config, transactions),
        weights=weights,
        pauses=pauses,
        baseline=not has_history,
        created_at=now,
        updated_at=now,
    )


# --- advance: set the weight, fan the step out ---------------------------------------------------


def advance(ctx: Context, rollout_id: str, step: int, attempt: int) -> str:
    """Start probing window (step, attempt). Returns a word saying what happened (for logs)."""
    with ctx.store.lock(rollout_id, wait_s=5.0) as fence:
        if fence is None:
            ctx.dispatcher.advance(rollout_id, step, attempt, RECHECK_S)
            return "locked"
        record = ctx.store.load_record(rollout_id)
        if record is None:
            return "unknown"
        offline.remember(record)
        if record.final:
            return "finished"
        if (record.step, record.attempt) != (step, attempt) or record.window == window_name(
            step, attempt
        ):
            return "stale"
        record.fence = fence
        word = _advance(ctx, record, step, attempt)
        outcome.save(ctx, record, progress=word not in ("paused", "pausing"))
        return word


def _advance(ctx: Context, record: RolloutRecord, step: int, attempt: int) -> str:
    if operator.apply_controls(ctx, record):
        return record.state
    if record.state == "paused":
        ctx.dispatcher.advance(record.id, step, attempt, PAUSE_RECHECK_S)
        return "paused"
    remaining = (record.pause_until or 0.0) - ctx.now()
    if remaining > 0:
        # Short hops rather than one long countdown, so the pause's end is seen promptly.
        ctx.dispatcher.advance(record.id, step, attempt, min(remaining, PAUSE_RECHECK_S))
        return "pausing"
    record.pause_until = None
    weight = record.weights[step]
    if not _set_weight(ctx, record, weight):
        return record.state
    _dispatch_window(ctx, record, step, attempt, weight)
    return "probing"


def _set_weight(ctx: Context, record: RolloutRecord, weight: int) -> bool:
    """Move traffic and check it moved; on failure roll back (fail safe) and say so.

    Whatever the router raises (a bad option, a bug) ends the rollout, never leaves it running.
    """
    name = record.config.router.type
    route = route_context(record.id, record.service, record.config, record.step)
    try:
        router = router_for(ctx, record.config.router)
        router.set_weight(weight, route)
        verified = router.verify_weight(weight, route)
    except Exception as exc:
        why = f"router {name} failed to set weight {weight}%: {outcome.describe_error(exc)}"
        outcome.end(ctx, record, "failed", Decision("rollback", [why]))
        return False
    if verified is False:
        why = f"router {name} reports a live weight other than {weight}%"
        outcome.end(ctx, record, "failed", Decision("rollback", [why]))
        return False
    record.weight = weight
    event: dict[str, Any] = {"weight": weight, "verified": verified, "router": router.name}
    # Routers that run commands say what the command printed; operators read it in the events.
    if getattr(router, "last_output", None):
        event["output"] = router.last_output  # type: ignore[attr-defined]
    ctx.store.append_event(record.id, "weight", event)
    return True


def _dispatch_window(
    ctx: Context, record: RolloutRecord, step: int, attempt: int, weight: int
) -> None:
    cfg = record.config
    window = window_name(step, attempt)
    interval = cfg.schedule.step_interval
    start = ctx.now()
    check_s = _check_interval(cfg)
    targets = {
        name: VersionTarget(url=v.url, headers=dict(v.headers))
        for name, v in (("stable", cfg.stable), ("canary", cfg.canary))
    }
    plan = plan_window(
        rollout_id=record.id,
        window=window,
        transactions=record.transactions,
        targets=targets,
        per_step=cfg.probes.per_step,
        batch_size=cfg.probes.batch_size,
        concurrency=cfg.probes.concurrency,
        environments=cfg.probes.environments,
        start=start,
        interval=interval,
        flush_s=check_s,
    )
    ctx.store.add_window(record.id, window)
    # Saved before any batch goes out, so every dispatched batch is either recorded or, once
    # the window is judged, accounted for as missing.
    ctx.store.set_expected(record.id, window, plan.expected)
    # Each batch probes stable and canary side by side at the same instants, so load on the
    # probing host or the network weighs on both alike and cannot pass for a regression.
    by_queue: dict[str, list[BatchSpec]] = {}
    for batch in plan.batches:
        by_queue.setdefault(f"{ctx.queue_prefix}.{batch.environment}", []).append(batch)
    for queue, batches in by_queue.items():
        ctx.dispatcher.probe(batches, queue)
    ctx.dispatcher.analyze(record.id, window, interval)
    if check_s is not None:
        ctx.dispatcher.check(record.id, window, check_s + CHECK_LAG_S)
    record.window, record.window_started_at, record.window_interval = window, start, interval
    record.expected_batches = [b.batch_id for b in plan.batches]
    ctx.store.append_event(
        record.id,
        "step",
        {
            "step": step,
            "attempt": attempt,
            "weight": weight,
            "window": window,
            "started_at": start,
            "batches": len(plan.batches),
            "probes": cfg.probes.per_step * 2 * len(record.transactions),
        },
    )


# --- analyze: judge the window, apply the decision ------------------------------------------------


def analyze(ctx: Context, rollout_id: str, window: str) -> str:
    """Judge a finished window and apply the decision."""
    if ctx.store.is_sealed(rollout_id, window) and not _sealed_unjudged(ctx, rollout_id, window):
        # Judged already: the fallback scheduled at the step's end, after the last batch's
        # record woke the analysis. Two reads, rather than waiting for the lock behind others.
        return "stale"
    with ctx.store.lock(rollout_id, wait_s=5.0) as fence:
        if fence is None:
            ctx.dispatcher.analyze(rollout_id, window, RECHECK_S)
            return "locked"
        record = ctx.store.load_record(rollout_id)
        if record is None:
            return "unknown"
        offline.remember(record)
        if not _running(record, window):
            return "stale"
        record.fence = fence
        following = _NextStep(ctx.dispatcher, rollout_id)
        word, session = _analyze(dataclasses.replace(ctx, dispatcher=following), record, window)
        if following.due is not None:
            early = _window_due(record) - ctx.now()
            if early > ADVANCE_INLINE_S:
                # Judged before the step's end (its probes end a margin before it): traffic
                # moves when the step is due, by a task sent for then, not early.
                ctx.dispatcher.advance(rollout_id, *following.due, early)
            else:
                # The next step starts in this task, under the lock it holds, rather than in a
                # task of its own: at 50 rollouts whose steps end together, that hop (a
                # publish, a delivery, the lock again, the record read and written again) was
                # most of how late their next steps began (scripts/bench-scale, py-spy).
                _advance(ctx, record, *following.due)
        engine = session.to_state() if session is not None else None
        saved = outcome.save(ctx, record, engine=engine, progress=word != "waiting")
        if session is not None:
            SESSIONS.drop_check(rollout_id, window)
            if record.final:
                SESSIONS.forget(rollout_id)
            elif saved and engine is not None:
                # Kept only once saved: a refused save (a newer holder) leaves Redis the truth.
                SESSIONS.keep(rollout_id, str(record.fence), session)
        return word


def _sealed_unjudged(ctx: Context, rollout_id: str, window: str) -> bool:
    """A sealed window the record still has running: its coordinator died between the seal and
    the save (which also starts the next step), and this re-delivered task must judge it."""
    record = ctx.store.load_record(rollout_id)
    return record is not None and _running(record, window)


def _window_due(record: RolloutRecord) -> float:
    """When the running window's step ends (its start plus its interval)."""
    return (record.window_started_at or 0.0) + (record.window_interval or 0.0)


class _NextStep:
    """A Dispatcher that keeps the analysed rollout's immediate next step for the caller to run.

    Everything else (probes, checks, later steps, other rollouts) goes to ``inner``.
    """

    def __init__(self, inner: Dispatcher, rollout_id: str) -> None:
        self.inner, self.rollout_id = inner, rollout_id
        self.due: tuple[int, int] | None = None

    def probe(self, batches: Sequence[BatchSpec], queue: str) -> None:
        self.inner.probe(batches, queue)

    def analyze(self, rollout_id: str, window: str, countdown: float) -> None:
        self.inner.analyze(rollout_id, window, countdown)

    def check(self, rollout_id: str, window: str, countdown: float) -> None:
        self.inner.check(rollout_id, window, countdown)

    def advance(self, rollout_id: str, step: int, attempt: int, countdown: float) -> None:
        if rollout_id == self.rollout_id and countdown <= 0 and self.due is None:
            self.due = (step, attempt)
        else:
            self.inner.advance(rollout_id, step, attempt, countdown)


def _analyze(ctx: Context, record: RolloutRecord, window: str) -> tuple[str, JudgeSession | None]:
    if operator.apply_controls(ctx, record):
        return record.state, None
    expected = set(record.expected_batches)
    done = ctx.store.recorded_batches(record.id, window)
    missing = expected - done
    late_by = ctx.now() - _window_due(record)
    # Sealed already (see _sealed_unjudged), its missing batches would be refused: no waiting.
    if missing and late_by < STRAGGLER_GRACE_S and not ctx.store.is_sealed(record.id, window):
        # The last batch recorded wakes the analysis up; until the window ends this is only
        # the fallback for batches that never report, so it need not poll.
        ctx.dispatcher.analyze(record.id, window, max(RECHECK_S, -late_by))
        return "waiting", None
    # Sealed before judging: a batch that reports later is refused, so the judged results
    # are exactly those of the batches recorded, and the others are accounted as missing.
    done = ctx.store.seal_window(record.id, window, sorted(expected))
    decision, session, stable = _judge(ctx, record, window, expected - done)
    decision = _hold_if_starved(ctx, record, window, decision)
    decision = outcome.apply(ctx, record, window, decision, stable)
    return decision.action, session


def min_probed_share() -> float:
    """CANARY_MIN_PROBED_SHARE: the share of a step's planned runs below which it holds (0.6)."""
    try:
        return min(1.0, max(0.0, float(os.environ.get("CANARY_MIN_PROBED_SHARE") or 0.6)))
    except ValueError:
        return 0.6


def _hold_if_starved(
    ctx: Context, record: RolloutRecord, window: str, decision: Decision
) -> Decision:
    """Hold (and alert) rather than move on when the fleet probed too little of the step.

    Probe workers short of capacity drop the runs they cannot start in time (canary.fleet), so
    a step that looks healthy may be mostly unobserved; a rollback is never held back, and a
    hold says first that the fleet, not the canary, is short.
    """
    if decision.action not in ("increase", "promote", "hold"):
        return decision
    acc = ctx.store.window_accounting(record.id, window)
    planned = sum(acc["expected"].values())
    share = acc["results"] / planned if planned else 1.0
    decision.metrics["probed_share"] = round(share, 4)
    if share >= min_probed_share():
        return decision
    reason = (
        f"probed {share:.0%} of the planned runs ({acc['results']} of {planned}) at weight "
        f"{record.weight}%: add probe workers"
    )
    outcome.alert(ctx, record, "starved", "probing starved", [reason], "warning")
    if decision.action == "hold":
        decision.reasons.insert(0, reason)
        return decision
    cfg = record.config
    max_holds = (
        EngineSettings.from_dict(cfg.analysis.engine).max_holds
        if cfg.analysis.judge == "sequential"
        else cfg.analysis.max_holds
    )
    if record.attempt >= max_holds:
        reason += f"; held {record.attempt} times (max {max_holds}): rolling back to fail safe"
        return Decision("rollback", [reason], metrics=decision.metrics)
    reason += "; holding rather than judging a partly observed step"
    return Decision("hold", [reason], alerts=decision.alerts, metrics=decision.metrics)


def _judge(
    ctx: Context, record: RolloutRecord, window: str, missing: set[str]
) -> tuple[Decision, JudgeSession, list[TransactionResult]]:
    """The judge's decision on a window, the session whose state to keep for the next, and
    the window's stable results (for the history, once the decision is told)."""
    results = ctx.store.window_results(record.id, window)
    canary = [r for r in results if r.version == "canary"]
    stable = [r for r in results if r.version == "stable"]
    _count_failures(record, canary)
    session = _step_session(ctx, record)
    session.observe(sorted(results, key=lambda r: r.t))
    decision = session.decide(
        ctx.now(),
        record.weight,
        step_end=True,
        holds=record.attempt,
        final=record.weight >= record.max_weight,
    )
    if missing:
        decision.reasons.append(
            f"{len(missing)} of {len(record.expected_batches)} probe batches did not report in time and were judged as missing data"
        )
    decision.metrics.setdefault("canary", _stats(canary))
    decision.metrics.setdefault("stable", _stats(stable))
    return decision, session, stable


def _step_session(ctx: Context, record: RolloutRecord) -> JudgeSession:
    """The judge for a step end: the copy this process kept from the last one while the saved
    state is still the one it saved (its etag), else opened on the saved state."""
    kept = SESSIONS.take(record.id)
    read = ctx.store.engine_if_changed(record.id, kept[0] if kept else None)
    if kept is not None and read.unchanged:
        return kept[1]
    return get_rollout_judge(record.config.analysis.judge).open(_setup(ctx, record), read.state)


def _setup(ctx: Context, record: RolloutRecord) -> JudgeSetup:
    cfg = record.config
    return JudgeSetup(
        slo=record.slo,
        transactions=record.transaction_names,
        history=lambda: _history(ctx, record),
        t0=record.window_started_at or ctx.now(),
        max_weight=record.max_weight,
        max_holds=cfg.analysis.max_holds,
        min_samples=cfg.analysis.min_samples,
        canary_failures=record.canary_failures,
        step=record.step,
        engine=dict(cfg.analysis.engine),
    )


def _history(ctx: Context, record: RolloutRecord) -> list[TransactionResult]:
    """Stable's history of the service before the current window (the judge's baseline)."""
    started = record.window_started_at or ctx.now()
    since = started - record.config.analysis.history_window
    history: list[TransactionResult] = []
    for name in record.transaction_names:
        history.extend(
            h for h in ctx.store.history(record.service, name, since=since) if h.t < started
        )
    return history


def _count_failures(record: RolloutRecord, canary: list[TransactionResult]) -> None:
    record.canary_failures += sum(1 for r in canary if not r.ok)


def _stats(results: list[TransactionResult]) -> dict[str, Any]:
    s = summarize_version(results, results[0].version if results else "")
    return (
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in vars(s).items()}
        if results
        else {"n": 0}
    )


# --- check: interim looks while a window runs ----------------------------------------------------


def _check_interval(cfg: RolloutConfig) -> float | None:
    """Seconds between interim checks, or None when the rollout gets none.

    Only a judge that may look while a step runs gets them (the sequential engine: its tests
    stay valid however often they are looked at); the others decide at step ends only.
    """
    if not get_rollout_judge(cfg.analysis.judge).interim or cfg.analysis.dry_run:
        # A dry run never acts mid-step; its step-end decisions say what it would have done.
        return None
    every = EngineSettings.from_dict(cfg.analysis.engine).check_interval_s
    return every if every + CHECK_LAG_S < cfg.schedule.step_interval else None


def _running(record: RolloutRecord, window: str) -> bool:
    """Whether ``window`` is the rollout's current, not yet judged window."""
    return not record.final and record.window == window and record.judged != window


def check(ctx: Context, rollout_id: str, window: str, *, chain: bool = True) -> str:
    """Look at the results pushed so far in a running window; roll back now if they say so.

    ``chain`` schedules the next check on the window's grid; a check that a probe worker asked
    for after pushing a failed canary run (canary.fleet) passes False, so the chain stays one.

    Without the lock: the window's checks look with a session of their own (canary.rollout.
    engines), opened on the judge's state at the window's start and fed the pushes as they come
    (the window's official results are observed into the kept state by ``analyze``), so a look
    changes nothing unless it rolls back, and only then is the lock taken and the record re-read.
    """
    with SESSIONS.checking(rollout_id, window) as slot:
        kept = slot.entry
        if kept is not None:
            look = ctx.store.look(rollout_id, window, kept.seen, kept.etag)
            if not look.unchanged and not look.sealed and look.record is not None:
                # The saved state is not the one this copy was opened on: start again from it.
                kept = slot.entry = None
        if kept is None:
            look = ctx.store.look(rollout_id, window, 0)
        if look.sealed or look.record is None:
            slot.done = True
            return "stale" if look.sealed else "unknown"  # judged (or cut short) already
        record = look.record
        every = _check_interval(record.config)
        now = ctx.now()
        elapsed = now - (record.window_started_at or now)
        left = (record.window_interval or 0.0) - elapsed
        if not _running(record, window) or every is None or left <= 0:
            slot.done = True
            return "stale"  # analyze judges the window now
        if kept is None:
            kept = slot.entry = CheckSession(look.etag, _check_session(ctx, record, look.engine))
        try:
            # Each look's pushes in time order, after those of the looks before.
            kept.session.observe(sorted(look.pushed, key=lambda r: r.t))
            kept.seen += len(look.pushed)
            decision = kept.session.decide(now, record.weight, step_end=False, holds=record.attempt)
        except Exception:
            slot.entry = None  # half fed: never looked with again
            raise
    if decision.action != "rollback":
        if not chain:
            return "ok"
        # The next grid point, whatever this check's delay: checks do not drift off the pushes.
        wait = every * ((elapsed - CHECK_LAG_S) // every + 1) + CHECK_LAG_S - elapsed
        if wait < left:
            ctx.dispatcher.check(rollout_id, window, max(wait, RECHECK_S))
        return "ok"
    SESSIONS.forget(rollout_id)
    with ctx.store.lock(rollout_id, wait_s=5.0) as fence:
        if fence is None:
            ctx.dispatcher.check(rollout_id, window, RECHECK_S)
            return "locked"
        current = ctx.store.load_record(rollout_id)
        if current is None or not _running(current, window):
            return "stale"
        offline.remember(current)
        current.fence = fence
        # Sealed as at a step end, so batches still running are refused (they stop at their
        # next push); their results so far join the window's, so the evidence is not lost.
        expected = sorted(current.expected_batches)
        done = ctx.store.seal_window(rollout_id, window, expected, keep_lookahead=True)
        results = ctx.store.window_results(rollout_id, window)
        canary = [r for r in results if r.version == "canary"]
        stable = [r for r in results if r.version == "stable"]
        _count_failures(current, canary)
        decision.reasons.insert(
            0, f"interim check {elapsed:.0f} s into the step at weight {current.weight}%"
        )
        decision.metrics["interim"] = True
        decision.metrics["batches_cut_short"] = len(set(expected) - done)
        decision.metrics.setdefault("canary", _stats(canary))
        decision.metrics.setdefault("stable", _stats(stable))
        outcome.apply(ctx, current, window, decision, stable)
        outcome.save(ctx, current)
        return "rollback"


def _check_session(
    ctx: Context, record: RolloutRecord, state: dict[str, Any] | None
) -> JudgeSession:
    """The judge opened for a window's interim looks, on its kept state (else on the stable
    history): once per window and process, since the window's checks keep it (engines.py)."""
    return get_rollout_judge(record.config.analysis.judge).open(_setup(ctx, record), state)
