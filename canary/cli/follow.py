"""Following rollouts from their event streams and printing what happens, line by line."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from canary.rollout import state as st
from canary.store import Store


@dataclass
class Followed:
    """One rollout being followed: where its stream was read to, and how it ended."""

    rollout_id: str
    label: str
    last_event: str = "0-0"
    steps: int = 0
    final: dict[str, Any] | None = None
    lines: list[str] = field(default_factory=list)


def _pct(v: Any) -> str:
    return "  n/a" if v is None else f"{float(v):5.1f}%"


def _ms(v: Any) -> str:
    return "n/a" if v is None else f"{float(v):.0f} ms"


def _version_line(name: str, m: dict[str, Any] | None) -> str:
    if not m or not m.get("n"):
        return f"{name} no results"
    return f"{name} {_pct(m.get('success_rate'))} ok, p95 {_ms(m.get('p95_ms'))} (n={m['n']})"


def describe(f: Followed, kind: str, data: dict[str, Any]) -> list[tuple[str, str]]:
    """Lines (text, style) for one event, in words an operator reads at a glance."""
    tag = f"[{f.label}] " if f.label else ""
    if kind == "created":
        weights = data.get("weights") or []
        f.steps = len(weights)
        base = (
            "; no recent stable history: step 1 also builds the baseline"
            if data.get("baseline")
            else ""
        )
        return [
            (f"{tag}rollout created; weights {' → '.join(f'{w}%' for w in weights)}{base}", "bold")
        ]
    if kind == "step":
        phase = (
            "isolated check (no traffic)" if data["weight"] == 0 else f"weight {data['weight']:>3}%"
        )
        again = f", attempt {data['attempt'] + 1}" if data.get("attempt") else ""
        return [
            (
                f"{tag}step {data['step'] + 1}/{f.steps or '?'}: {phase}{again} — {data.get('probes', '?')} transactions",
                "cyan",
            )
        ]
    if kind == "decision":
        metrics = data.get("metrics") or {}
        head = f"{tag}  {data['action']:<8} {_version_line('canary', metrics.get('canary'))} | {_version_line('stable', metrics.get('stable'))}"
        style = {"rollback": "bold red", "hold": "yellow", "promote": "bold green"}.get(
            data["action"], "green"
        )
        out = [(head, style)]
        out += [(f"{tag}           · {r}", "dim") for r in data.get("reasons") or []]
        return out
    if kind == "weight" and data.get("router") != "noop":
        check = {True: "verified", False: "NOT verified", None: "unverifiable"}[
            data.get("verified")
        ]
        return [
            (
                f"{tag}  traffic: {data['weight']}% to canary via {data.get('router')} ({check})",
                "dim",
            )
        ]
    if kind == "pause":
        if "ended" in data:
            return [(f"{tag}  pause ended: {data['ended']}", "yellow")]
        return [(f"{tag}  pausing {data['seconds']:.0f} s before the next step", "yellow")]
    if kind == "alert":
        return [(f"{tag}  alert ({data.get('kind')}): {data.get('summary')}", "magenta")]
    if kind == "command":
        return [(f"{tag}  operator: {data.get('command')}", "magenta")]
    if kind == "state":
        if data["state"] in ("paused", "running"):
            why = "; ".join(data.get("reasons") or [])
            return [(f"{tag}  {data['state']}" + (f": {why}" if why else ""), "yellow")]
        style = "bold green" if data["state"] == "promoted" else "bold red"
        pred = " (predictive)" if data.get("predictive") else ""
        return [
            (
                f"{tag}{data['state'].replace('_', ' ').upper()}{pred} at weight {data.get('weight')}%",
                style,
            )
        ]
    return []


def follow(
    store: Store, rollouts: Sequence[Followed], console: Console, *, deadline: float
) -> bool:
    """Print events of all ``rollouts`` until each has finished; False when the deadline passed."""
    while any(f.final is None for f in rollouts):
        if time.monotonic() > deadline:
            return False
        for f in rollouts:
            if f.final is not None:
                continue
            for eid, ev in store.read_events(
                f.rollout_id, f.last_event, block_ms=200 if len(rollouts) == 1 else 50
            ):
                f.last_event = eid
                for text, style in describe(f, ev["type"], ev["data"]):
                    console.print(text, style=style, highlight=False, markup=False)
                if ev["type"] == "state" and st.is_final(ev["data"]["state"]):
                    f.final = store.load_rollout(f.rollout_id) or {
                        "id": f.rollout_id,
                        "state": ev["data"]["state"],
                    }
    return True
