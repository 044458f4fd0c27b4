"""What a decision changes, and the one place a rollout ends: apply, end, fail_safe, alert, save."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from canary.analysis.decision import Decision
from canary.notifiers import Alert, build_notifier, deliver
from canary.probing.result import TransactionResult
from canary.rollout import offline, operator
from canary.rollout import state as st
from canary.rollout.context import Context, route_context, router_for
from canary.rollout.record import RolloutRecord

log = logging.getLogger(__name__)

DECISIONS_KEPT = 200
# The alert kinds a judge may raise with a decision, by what their text contains.
STABLE_UNHEALTHY = "stable_unhealthy"
_DECISION_ALERTS = ((STABLE_UNHEALTHY, STABLE_UNHEALTHY), ("budget", "error_budget"))


def apply(
    ctx: Context,
    record: RolloutRecord,
    window: str,
    decision: Decision,
    stable: Sequence[TransactionResult] = (),
) -> Decision:
    """Record a window's decision and act on it, and return it; the caller saves the record once.

    A stable that fails is no baseline: while the judge says so, traffic never moves (an
    increase or a promotion becomes a hold), and operators hear it once. ``stable``: the
    window's stable results, which join the service's history once they were judged against it.

    A window is told once (Store.judge_window): judged again after its coordinator died before
    the save, it applies the decision told the first time, and adds nothing twice.
    """
    unhealthy = any(STABLE_UNHEALTHY in a for a in decision.alerts)
    if unhealthy and decision.action in ("increase", "promote"):
        decision.reasons.append(
            f"holding at {record.weight}%: traffic does not move while stable is unhealthy"
        )
        decision.action = "hold"
    if record.config.analysis.dry_run and decision.action == "rollback":
        decision = _dry_run(record, decision)
    record.judged = window
    entry = {
        "window": window,
        "step": record.step,
        "attempt": record.attempt,
        "weight": record.weight,
        **decision.to_dict(),
    }
    told = ctx.store.judge_window(record.id, window, entry, record.service, stable)
    if told is not None:
        entry, decision = told, Decision.from_dict(told)
    record.decisions = [
        *record.decisions[-DECISIONS_KEPT + 1 :],
        {k: v for k, v in entry.items() if k != "metrics"},
    ]
    for text in decision.alerts:
        kind = _alert_kind(text)
        summary = (
            "stable is unhealthy: it is no baseline, the rollout holds"
            if kind == STABLE_UNHEALTHY
            else text
        )
        alert(ctx, record, kind, summary, decision.reasons, "warning")
    step, attempt = record.step, record.attempt
    if decision.action == "rollback":
        end(ctx, record, "rolled_back", decision)
    elif decision.action == "promote" or (
        decision.action == "increase" and step + 1 >= len(record.weights)
    ):
        end(ctx, record, "promoted", decision)
    elif decision.action == "increase":
        record.step, record.attempt = step + 1, 0
        if str(step + 1) in record.pauses:
            operator.enter_pause(ctx, record, step + 1)
        ctx.dispatcher.advance(record.id, step + 1, 0, 0.0)
    else:  # hold: probe the same weight again
        record.attempt = attempt + 1
        ctx.dispatcher.advance(record.id, step, attempt + 1, 0.0)
    return decision


def _dry_run(record: RolloutRecord, decision: Decision) -> Decision:
    """``analysis.dry_run``: say what the judge would have done, and go on with the schedule."""
    last = record.step + 1 >= len(record.weights)
    metrics = {**decision.metrics, "dry_run": True, "would": "rollback"}
    reasons = [f"dry run: the analysis would roll back here: {r}" for r in decision.reasons]
    return Decision("promote" if last else "increase", reasons, decision.predictive, [], metrics)


def _alert_kind(text: str) -> str:
    for prefix, kind in _DECISION_ALERTS:
        if prefix in text:
            return kind
    return "failure"


def end(ctx: Context, record: RolloutRecord, new_state: str, decision: Decision) -> None:
    """End the rollout: the only place one ends. The caller saves the record once.

    ``promoted`` sends all traffic to the canary; every other end sends it to stable. A router
    that fails (or cannot even be built) is reported, not hidden, and a promotion it refused
    ends on stable instead. The window in progress is sealed, so its batches stop.
    """
    reasons = list(decision.reasons)
    name = record.config.router.type
    route = route_context(record.id, record.service, record.config, record.step)
    if new_state == "promoted":
        try:
            router_for(ctx, record.config.router).promote(route)
            record.weight = 100
        except Exception as exc:
            reasons.append(f"router {name} failed to promote: {describe_error(exc)}")
            new_state = "failed"
    if new_state != "promoted":
        try:
            router_for(ctx, record.config.router).rollback(route)
            record.weight = 0
        except Exception as exc:
            reasons.append(
                f"router {name} failed to roll back: {describe_error(exc)}; "
                "traffic may still reach the canary"
            )
            new_state = "failed"
    if record.window and record.judged != record.window:
        ctx.store.seal_window(record.id, record.window, sorted(record.expected_batches))
    final = Decision(
        "promote" if new_state == "promoted" else "rollback",
        reasons,
        predictive=decision.predictive,
        metrics=decision.metrics,
    )
    if new_state == "promoted":
        version = record.config.canary.version
        summary = f"canary {version} promoted" if version else "canary promoted"
        alert(ctx, record, "promotion", summary, reasons, "info")
    else:
        kind = "rollback" if new_state in ("rolled_back", "aborted") else "failure"
        if decision.predictive:
            kind = "predicted_breach"
        summary = f"rollout {new_state.replace('_', ' ')}; traffic back to stable"
        alert(ctx, record, kind, summary, reasons, "critical")
    set_state(ctx, record, new_state, final)


def describe_error(exc: Exception) -> str:
    """An error for operators: our own errors say enough, a bug also says what it was."""
    text = str(exc)
    if not text or type(exc).__module__ == "builtins":
        return f"{type(exc).__name__}: {text}"
    return text


def set_state(ctx: Context, record: RolloutRecord, new_state: str, decision: Decision) -> None:
    """Change the state; the state event is told once the save that holds it is accepted."""
    record.state = st.transition(record.state, new_state)
    if st.is_final(new_state):
        # A finished rollout must never be "rolled back" from memory later (it may be promoted).
        offline.forget(record.id)
        record.outcome = st.OUTCOME[new_state]
        record.finished_at = ctx.now()
        record.reasons = decision.reasons
        record.predictive = decision.predictive
    record.events_after_save.append(
        (
            "state",
            {
                "state": new_state,
                "outcome": record.outcome,
                "weight": record.weight,
                "reasons": decision.reasons,
                "predictive": decision.predictive,
            },
        )
    )


def save(
    ctx: Context,
    record: RolloutRecord,
    *,
    engine: dict[str, Any] | None = None,
    progress: bool = True,
) -> bool:
    """The task's one write: the record (and the judge's state), then what waited for it.

    Saved before the state event is told, so whoever reads the record on that event sees the
    end; alerts go out after the end is saved, so a channel never keeps it from being written
    (whatever it raises is a failed channel in the alert's event). A save that
    is not ``progress`` (a stuck alert) leaves ``updated_at`` alone.
    """
    if progress:
        record.updated_at = ctx.now()
    pending, record.events_after_save = record.events_after_save, []
    if not ctx.store.save_record(record, engine=engine):
        return False
    # Alerts keep their place before the state event, which followers take as the end; the
    # record, saved above, already holds it whatever a channel does.
    for kind, data in pending:
        if kind == "alert":
            _deliver(ctx, record, data)
        else:
            ctx.store.append_event(record.id, kind, data)
    return True


def alert(
    ctx: Context,
    record: RolloutRecord,
    kind: str,
    summary: str,
    reasons: list[str],
    severity: str,
) -> None:
    """Send an alert once per rollout and kind of trouble (after the next save)."""
    a = Alert(
        kind=kind,  # type: ignore[arg-type]
        rollout_id=record.id,
        service=record.service,
        stable_version=record.config.stable.version,
        canary_version=record.config.canary.version,
        weight=int(record.weight),
        summary=summary,
        reasons=list(reasons),
        severity=severity,  # type: ignore[arg-type]
    )
    if a.dedupe_key in record.alerts_sent:
        return
    record.alerts_sent.append(a.dedupe_key)
    record.events_after_save.append(("alert", a.to_dict()))


def _deliver(ctx: Context, record: RolloutRecord, data: dict[str, Any]) -> None:
    """Deliver through every notifier; whatever one raises is a failed channel, not a crash."""
    failed: list[str] = []
    try:
        a = Alert(**data)
    except Exception as exc:  # a bug, but an alert must never stop a rollout's end
        log.exception("alert of %s unusable", record.id)
        failed.append(f"alert: {type(exc).__name__}: {exc}")
        a = None
    notifiers = []
    for spec in record.config.notifiers:
        try:
            notifiers.append(build_notifier(spec.type, spec.options()))
        except Exception as exc:
            log.warning("notifier %s unusable: %s", spec.type, exc)
            failed.append(f"{spec.type}: {type(exc).__name__}: {exc}")
    if a is not None:
        try:
            failed.extend(deliver(notifiers, a))
        except Exception as exc:
            log.exception("alert of %s: delivery crashed", record.id)
            failed.append(f"delivery: {type(exc).__name__}: {exc}")
    ctx.store.append_event(record.id, "alert", {**data, "failed_channels": failed})


def fail_safe(ctx: Context, rollout_id: str, reason: str) -> None:
    """Called when a coordinator task failed for good: send traffic to stable and say why."""
    with ctx.store.lock(rollout_id, wait_s=10.0) as fence:
        record = ctx.store.load_record(rollout_id)
        if record is None or record.final:
            return
        # Without the lock (its holder is stuck) the end is still written, with the last token.
        record.fence = fence or record.fence
        end(ctx, record, "failed", Decision("rollback", [reason]))
        save(ctx, record)
