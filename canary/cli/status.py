"""How `canary rollout status` prints rollouts: one list and one detail view, both 80 columns wide."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from typing import Any

from canary.rollout import state as st
from canary.rollout.progress import Progress

WIDTH = 80


def _when(ts: Any) -> str:
    return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _words(state: str) -> str:
    return state.replace("_", " ")


def _canary(record: dict[str, Any]) -> str:
    cfg = (record.get("config") or {}).get("canary") or {}
    return str(cfg.get("version") or cfg.get("url") or "-")


def ending(record: dict[str, Any]) -> str:
    """How a rollout ended, or what it last decided: the list's second line."""
    state = str(record.get("state") or "")
    decisions = record.get("decisions") or []
    last = decisions[-1] if decisions else {}
    if st.is_final(state):
        reasons = record.get("reasons") or last.get("reasons") or []
        where = "all traffic on the canary" if state == "promoted" else "traffic on stable"
        head = f"{_words(state)} ({where})"
        return f"{head}: {reasons[0]}" if reasons else head
    progress = Progress.of(record)
    now = f"weight {progress.weight}%" + (
        f", next {progress.next_weight}%" if progress.next_weight is not None else ""
    )
    if state == "paused":
        now = f"paused at {now}"
    if not last:
        return f"{now}; no decision yet"
    reasons = last.get("reasons") or []
    return f"{now}; last: {last.get('action')}" + (f" ({reasons[0]})" if reasons else "")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


def table_lines(records: list[dict[str, Any]], width: int = WIDTH) -> list[str]:
    """The list: id, state, step, canary version; under each, how it ended or what it decided."""
    if not records:
        return ["no rollouts yet (start one with `canary rollout start FILE`)"]
    id_w = max(len("ID"), *(len(str(r["id"])) for r in records))
    rows = [
        (
            str(r["id"]),
            _words(str(r.get("state"))),
            f"{Progress.of(r).number} of {Progress.of(r).total}",
            _canary(r),
        )
        for r in records
    ]
    state_w = max(len("STATE"), *(len(s) for _, s, _, _ in rows))
    step_w = max(len("STEP"), *(len(s) for _, _, s, _ in rows))

    def line(a: str, b: str, c: str, d: str) -> str:
        head = f"{a:<{id_w}}  {b:<{state_w}}  {c:<{step_w}}  "
        return head + _clip(d, max(8, width - len(head)))

    out = [line("ID", "STATE", "STEP", "CANARY")]
    for r, row in zip(records, rows, strict=True):
        out.append(line(*row))
        out.append(_clip(f"  └ {ending(r)}", width))
    return out


def detail_lines(record: dict[str, Any], width: int = WIDTH) -> list[str]:
    """One rollout: versions, the step in words, the schedule, how it ended, the last decisions."""
    cfg = record.get("config") or {}
    state = str(record.get("state") or "")
    progress = Progress.of(record)
    weights = record.get("weights") or []

    def wrap(text: str, indent: str = "") -> list[str]:
        return textwrap.wrap(
            text, width, initial_indent=indent, subsequent_indent=indent + "    "
        ) or [indent]

    def version(which: str) -> str:
        v = cfg.get(which) or {}
        return f"{which:<6} {v.get('version') or '-'}  {v.get('url') or ''}".rstrip()

    out = [f"{record['id']}  [{_words(state)}]", version("stable"), version("canary")]
    step = progress.text(final=st.is_final(state))
    out += wrap(("paused at " if state == "paused" else "") + step)
    out += wrap("schedule " + " → ".join(f"{w}%" for w in weights), "")
    out += wrap(
        f"started {_when(record.get('created_at'))} UTC; "
        f"canary failures so far {record.get('canary_failures', 0)}"
    )
    if st.is_final(state):
        out += wrap(f"ended {_when(record.get('finished_at'))} UTC: {ending(record)}")
        for reason in (record.get("reasons") or [])[1:]:
            out += wrap(f"- {reason}", "  ")
    decisions = (record.get("decisions") or [])[-5:]
    if decisions:
        out.append("last decisions:")
    for d in decisions:
        reasons = "; ".join(d.get("reasons") or []) or "-"
        out += wrap(f"{d.get('window')}: {d.get('action')} at {d.get('weight')}%: {reasons}", "  ")
    return out
