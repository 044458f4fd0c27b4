"""What the dashboard shows of a rollout, read from the store into typed views (no HTML here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from canary.analysis.stats import percentile
from canary.report import ReportData, from_store
from canary.rollout import state as st
from canary.rollout.progress import Progress
from canary.store import Store

VERSIONS = ("stable", "canary")
ACTIONS = ("pause", "resume", "promote", "abort")


@dataclass(frozen=True)
class Summary:
    """One line of the fleet's list."""

    id: str
    name: str
    state: str
    outcome: str | None
    progress: Progress
    stable_version: str
    canary_version: str
    created_at: float
    updated_at: float
    last_action: str | None
    last_reason: str | None

    @property
    def final(self) -> bool:
        return st.is_final(self.state)

    @property
    def fingerprint(self) -> tuple[str, float, str]:
        return (self.id, self.updated_at, self.state)


@dataclass(frozen=True)
class VersionStats:
    n: int
    success_pct: float | None
    p95_ms: float | None


@dataclass(frozen=True)
class TransactionRow:
    """Per-version success and p95 of one transaction over the current step (or the rollout)."""

    transaction: str
    stable: VersionStats
    canary: VersionStats


@dataclass(frozen=True)
class AlertView:
    t: float
    kind: str
    severity: str
    summary: str
    reasons: list[str]
    failed_channels: list[str]


@dataclass
class RolloutView:
    summary: Summary
    stable_url: str
    canary_url: str
    reasons: list[str]
    data: ReportData
    rows: list[TransactionRow]
    rows_scope: str
    alerts: list[AlertView] = field(default_factory=list)

    @property
    def actions(self) -> tuple[str, ...]:
        """The buttons that make sense now: none once it ended; resume only while paused."""
        if self.summary.final:
            return ()
        if self.summary.state == "paused":
            return ("resume", "promote", "abort")
        return ("pause", "promote", "abort")


def _version(cfg: dict[str, Any], which: str, key: str) -> str:
    return str((cfg.get(which) or {}).get(key) or "")


def summary_of(record: dict[str, Any]) -> Summary:
    cfg = record.get("config") or {}
    decisions = record.get("decisions") or []
    last = decisions[-1] if decisions else {}
    reasons = record.get("reasons") or last.get("reasons") or []
    return Summary(
        id=str(record["id"]),
        name=str(record.get("name") or record["id"]),
        state=str(record.get("state") or "unknown"),
        outcome=record.get("outcome"),
        progress=Progress.of(record),
        stable_version=_version(cfg, "stable", "version") or _version(cfg, "stable", "url"),
        canary_version=_version(cfg, "canary", "version") or _version(cfg, "canary", "url"),
        created_at=float(record.get("created_at") or 0.0),
        updated_at=float(record.get("updated_at") or 0.0),
        last_action=str(last["action"]) if last.get("action") else None,
        last_reason=str(reasons[0]) if reasons else None,
    )


def list_rollouts(store: Store, limit: int = 30) -> list[Summary]:
    """Running rollouts first, then the most recent finished ones."""
    summaries = [summary_of(r) for r in store.list_rollouts(limit=limit)]
    return sorted(summaries, key=lambda s: (s.final, -s.created_at))


def _stats(latencies: list[float], ok: int) -> VersionStats:
    if not latencies:
        return VersionStats(0, None, None)
    return VersionStats(len(latencies), 100.0 * ok / len(latencies), percentile(latencies, 95))


def transaction_rows(
    data: ReportData, since: float, until: float = float("inf")
) -> list[TransactionRow]:
    rows = []
    for name in sorted({o.transaction for o in data.observations}):
        per: dict[str, VersionStats] = {}
        for v in VERSIONS:
            g = [o for o in data.observations if o.version == v and o.transaction == name]
            g = [o for o in g if since <= o.t < until]
            per[v] = _stats([o.latency_ms for o in g], sum(1 for o in g if o.ok))
        rows.append(TransactionRow(name, per["stable"], per["canary"]))
    return rows


def _alerts(store: Store, rollout_id: str, t0: float) -> list[AlertView]:
    alerts, after = [], "0-0"
    while True:
        page = store.read_events(rollout_id, after, count=500)
        for eid, ev in page:
            after = eid
            if ev.get("type") != "alert":
                continue
            d = ev.get("data") or {}
            alerts.append(
                AlertView(
                    t=float(ev["t"]) - t0,
                    kind=str(d.get("kind") or ""),
                    severity=str(d.get("severity") or ""),
                    summary=str(d.get("summary") or ""),
                    reasons=[str(r) for r in d.get("reasons") or []],
                    failed_channels=[str(c) for c in d.get("failed_channels") or []],
                )
            )
        if len(page) < 500:
            return alerts


def _scope(summary: Summary, data: ReportData) -> tuple[float, float, str]:
    """The current step's results; just after a step began, the last step that has some."""
    if summary.final or not data.weights:
        return float("-inf"), float("inf"), "whole rollout"
    starts = sorted(data.weights)
    for i in range(len(starts) - 1, -1, -1):
        t, w = starts[i]
        end = starts[i + 1][0] if i + 1 < len(starts) else float("inf")
        if any(o.version == "canary" and t <= o.t < end for o in data.observations):
            label = "this step" if i == len(starts) - 1 else "last step with results"
            return t, end, f"{label} (weight {w:g}%)"
    return float("-inf"), float("inf"), "whole rollout"


def rollout_view(store: Store, rollout_id: str) -> RolloutView | None:
    record = store.load_rollout(rollout_id)
    if record is None:
        return None
    summary = summary_of(record)
    t0 = float(record.get("created_at") or 0.0)
    data = from_store(store, rollout_id)
    alerts = _alerts(store, rollout_id, t0)
    since, until, scope = _scope(summary, data)
    cfg = record.get("config") or {}
    return RolloutView(
        summary=summary,
        stable_url=_version(cfg, "stable", "url"),
        canary_url=_version(cfg, "canary", "url"),
        reasons=[str(r) for r in record.get("reasons") or []],
        data=data,
        rows=transaction_rows(data, since, until),
        rows_scope=scope,
        alerts=alerts,
    )
