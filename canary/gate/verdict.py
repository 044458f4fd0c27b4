"""From a rollout record to the gate's answer: verdict, reasons and metrics (specs/gate.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from canary.rollout import state as st

VerdictWord = Literal["running", "pass", "fail"]
Isolated = Literal["pending", "passed", "failed"]
Number = int | float | str | bool | None


@dataclass(frozen=True)
class Verdict:
    """What the gate answers about one analysis."""

    name: str
    verdict: VerdictWord
    reasons: list[str]
    metrics: dict[str, Number] = field(default_factory=dict)
    rollout_id: str = ""
    # The weight-0 check of the canary alone (Flagger's pre-rollout hook waits on it).
    isolated: Isolated = "pending"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "metrics": dict(self.metrics),
            "rollout_id": self.rollout_id,
            "isolated_check": self.isolated,
        }


def starting(name: str, rid: str, waited: float) -> Verdict:
    return Verdict(
        name,
        "running",
        [f"analysis {rid} sent to the fleet {waited:.0f} s ago; waiting for a worker to start it"],
        {"state": "starting", "elapsed_s": round(waited, 1)},
        rid,
    )


def start_failed(name: str, rid: str, waited: float) -> Verdict:
    return Verdict(
        name,
        "fail",
        [
            f"analysis {rid} was sent to the fleet {waited:.0f} s ago and no worker started it; "
            "are the canary workers running on the gate's Redis?"
        ],
        {"state": "not_started", "elapsed_s": round(waited, 1)},
        rid,
        "failed",
    )


def from_record(
    name: str, record: dict[str, Any], last_metrics: dict[str, Any], *, now: float
) -> Verdict:
    """The verdict of a rollout record; ``last_metrics`` are its newest decision's numbers."""
    state = str(record["state"])
    if state == "promoted":
        word: VerdictWord = "pass"
    elif st.is_final(state):
        word = "fail"
    else:
        word = "running"
    if st.is_final(state):
        reasons = [str(r) for r in record.get("reasons") or []]
    else:
        last = (record.get("decisions") or [{}])[-1]
        reasons = [str(r) for r in last.get("reasons") or []] or [
            "the canary is being probed beside stable; no decision yet"
        ]
    return Verdict(
        name, word, reasons, _metrics(record, last_metrics, now), record["id"], _isolated(record)
    )


def _isolated(record: dict[str, Any]) -> Isolated:
    weights = record.get("weights") or []
    has_check = bool(weights) and weights[0] == 0
    if record["state"] == "promoted" or not has_check or int(record.get("step") or 0) >= 1:
        return "passed"
    if st.is_final(str(record["state"])):
        return "failed"
    return "pending"


def _metrics(record: dict[str, Any], last: dict[str, Any], now: float) -> dict[str, Number]:
    weights = record.get("weights") or []
    step = int(record.get("step") or 0)
    decisions = record.get("decisions") or []
    out: dict[str, Number] = {
        "state": str(record["state"]),
        "step": step + 1,
        "steps": len(weights),
        # The step's weight in canary's own schedule; the controller moves the real traffic.
        "nominal_weight": int(record.get("weight") or 0),
        "holds": int(record.get("attempt") or 0),
        "decisions": len(decisions),
        "last_action": decisions[-1].get("action") if decisions else None,
        "canary_failures": int(record.get("canary_failures") or 0),
        "predictive": bool(record.get("predictive")),
        "elapsed_s": round(
            float(record.get("finished_at") or now) - float(record.get("created_at") or now), 1
        ),
    }
    for version in ("canary", "stable"):
        stats = last.get(version)
        if not isinstance(stats, dict):
            continue
        for key in ("n", "success_rate", "p50_ms", "p95_ms"):
            value = stats.get(key)
            if isinstance(value, int | float) and not (
                isinstance(value, float) and math.isnan(value)
            ):
                out[f"{version}_{key}"] = round(value, 2) if isinstance(value, float) else value
    return out
