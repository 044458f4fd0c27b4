"""The data a report shows: a rollout from the store, or a recording replayed through the analysis."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from canary.analysis.stats import percentile
from canary.errors import CanaryError
from canary.store import Store

if TYPE_CHECKING:
    from canary.replay import RolloutModel

VERSIONS = ("stable", "canary")
# Enough results per version in a time bucket that its p95 means something.
RESULTS_PER_BUCKET = 15
MAX_BUCKETS = 60


# --- the data a report shows ----------------------------------------------------------------


@dataclass
class Observation:
    t: float  # seconds since the report's origin
    version: str
    transaction: str
    ok: bool
    latency_ms: float


@dataclass
class DecisionMark:
    t: float
    action: str
    weight: float | None
    reasons: list[str]
    predictive: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class Forecast:
    """A band the analysis forecast for one metric, against its objective."""

    metric: str  # "p95_ms", "p50_ms", "error_rate_pct" or "success_rate"
    points: list[tuple[float, float, float, float]]  # (t, mean, lo, hi)
    threshold: float | None = None
    probability: float | None = None


@dataclass
class ReportData:
    title: str
    source: str
    stable_version: str | None = None
    canary_version: str | None = None
    outcome: str | None = None
    state: str | None = None
    started_at: float | None = None  # Unix time of the origin, when known
    observations: list[Observation] = field(default_factory=list)
    decisions: list[DecisionMark] = field(default_factory=list)
    weights: list[tuple[float, float]] = field(default_factory=list)
    weights_nominal: bool = False
    slo: dict[str, Any] = field(default_factory=dict)
    final_reasons: list[str] = field(default_factory=list)
    forecasts: list[Forecast] = field(default_factory=list)
    end: float | None = None

    @property
    def duration(self) -> float:
        ts = [o.t for o in self.observations] + [d.t for d in self.decisions]
        ts += [t for t, _ in self.weights]
        if self.end is not None:
            ts.append(self.end)
        return max(ts, default=0.0) - min(0.0, *ts) if ts else 0.0


def as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _add_decision(data: ReportData, d: dict[str, Any], t: float) -> None:
    """A decision (from a live event or a replay line) as a mark, with any forecast it carries."""
    metrics = d.get("metrics") if isinstance(d.get("metrics"), dict) else {}
    data.decisions.append(
        DecisionMark(
            t=t,
            action=str(d.get("action")),
            weight=as_float(d.get("weight")),
            reasons=[str(r) for r in d.get("reasons") or []],
            predictive=bool(d.get("predictive")),
            metrics=metrics or {},
        )
    )
    data.forecasts.extend(_forecasts(metrics or {}, t))


def _forecasts(metrics: dict[str, Any], t: float) -> list[Forecast]:
    """Forecast bands a decision carries (optional, tolerant of shape).

    ``metrics.forecast`` is one object or a list of them: ``metric``, ``threshold`` (or
    ``slo``), ``probability``, and ``points`` of ``{t | dt, mean | yhat, lo, hi}`` where ``t`` is
    on the report's timeline and ``dt`` counts from the decision.
    """
    raw = metrics.get("forecast") if isinstance(metrics, dict) else None
    items = raw if isinstance(raw, list) else [raw] if isinstance(raw, dict) else []
    out = []
    for item in items:
        if not isinstance(item, dict):
            continue
        points = []
        for p in item.get("points") or []:
            if not isinstance(p, dict):
                continue
            pt = as_float(p.get("t"))
            if pt is None and as_float(p.get("dt")) is not None:
                pt = t + float(p["dt"])
            mean = as_float(p.get("mean", p.get("yhat")))
            lo, hi = as_float(p.get("lo")), as_float(p.get("hi"))
            if pt is not None and mean is not None:
                points.append((pt, mean, mean if lo is None else lo, mean if hi is None else hi))
        if points:
            out.append(
                Forecast(
                    metric=str(item.get("metric") or "p95_ms"),
                    points=sorted(points),
                    threshold=as_float(item.get("threshold", item.get("slo"))),
                    probability=as_float(item.get("probability")),
                )
            )
    return out


def from_store(store: Store, rollout_id: str) -> ReportData:
    """Everything the report needs about a rollout: its record, events and results."""
    record = store.load_rollout(rollout_id)
    if record is None:
        raise CanaryError(f"no rollout {rollout_id} in Redis (finished ones expire after 30 days)")
    t0 = float(record.get("created_at") or 0.0)
    cfg = record.get("config") or {}
    data = ReportData(
        title=str(record.get("name") or rollout_id),
        source=f"rollout {rollout_id}",
        stable_version=(cfg.get("stable") or {}).get("version"),
        canary_version=(cfg.get("canary") or {}).get("version"),
        outcome=record.get("outcome"),
        state=record.get("state"),
        started_at=t0,
        slo=dict(record.get("slo") or {}),
        final_reasons=[str(r) for r in record.get("reasons") or []],
    )
    after = "0-0"
    while True:
        events = store.read_events(rollout_id, after, count=500)
        for eid, ev in events:
            after = eid
            t, d = float(ev["t"]) - t0, ev.get("data") or {}
            if ev["type"] == "weight" or (ev["type"] == "state" and "weight" in d):
                w = as_float(d.get("weight"))
                if w is not None:
                    data.weights.append((t, w))
            if ev["type"] == "decision":
                _add_decision(data, d, t)
            data.end = t
        if len(events) < 500:
            break
    data.observations = [
        Observation(r.t - t0, r.version, r.transaction, r.ok, r.latency_ms)
        for r in store.all_results(rollout_id)
    ]
    if record.get("finished_at"):
        data.end = float(record["finished_at"]) - t0
    return data


def from_recording(path: str | Path, *, analyse: bool = True) -> ReportData:
    """A report of a recording, read by ``replay.load_recording`` (the one parser of the format).

    A recording holds results, not decisions: with ``analyse`` the decisions are what the
    analysis decides on replaying it (``canary replay``); without, the weight follows the
    nominal schedule.
    """
    from canary import replay

    rec = replay.load_recording(path)
    data = ReportData(
        title=rec.name,
        source=f"recording {Path(path).name}",
        slo=dict(rec.slo_raw),
        observations=[
            Observation(r.t, r.version, r.transaction, r.ok, r.latency_ms) for r in rec.observations
        ],
        end=rec.end_t,
    )
    if analyse:
        for line in replay.replay(rec):
            if "outcome" in line:
                data.outcome = str(line["outcome"])
                continue
            _add_decision(data, line, float(line["t"]))
        if data.decisions and data.decisions[-1].action in ("promote", "rollback"):
            data.final_reasons = data.decisions[-1].reasons
    data.weights = _recorded_weights(rec.rollout, data)
    return data


def _recorded_weights(schedule: RolloutModel, data: ReportData) -> list[tuple[float, float]]:
    """The weight over time: from the decisions when there are some, else the nominal schedule."""
    initial = float(schedule.initial_weight)
    if data.decisions:
        weights = [(0.0, initial)]
        weights += [(d.t, d.weight) for d in data.decisions if d.weight is not None]
        return weights
    if not data.observations:
        return []
    data.weights_nominal = True
    end = max(o.t for o in data.observations)
    out, t, w = [], 0.0, initial
    step, top = float(schedule.step_weight), float(schedule.max_weight)
    while t <= end:
        out.append((t, min(w, top)))
        t, w = t + schedule.step_interval_s, w + step
    return out


# --- aggregation ----------------------------------------------------------------------------


@dataclass
class Bucket:
    t: float  # middle of the bucket
    n: int
    error_rate_pct: float
    p50_ms: float
    p95_ms: float


def buckets(observations: Sequence[Observation], version: str, width: float) -> list[Bucket]:
    """Per time bucket of ``width`` seconds: error rate and latency of one version."""
    groups: dict[int, list[Observation]] = {}
    for o in observations:
        if o.version == version:
            groups.setdefault(math.floor(o.t / width), []).append(o)
    out = []
    for k in sorted(groups):
        g = groups[k]
        lat = [o.latency_ms for o in g]
        failed = sum(1 for o in g if not o.ok)
        out.append(
            Bucket(
                t=(k + 0.5) * width,
                n=len(g),
                error_rate_pct=100.0 * failed / len(g),
                p50_ms=percentile(lat, 50),
                p95_ms=percentile(lat, 95),
            )
        )
    return out


def bucket_width(observations: Sequence[Observation]) -> float:
    if not observations:
        return 1.0
    span = max(o.t for o in observations) - min(o.t for o in observations)
    per_version = len(observations) / 2
    count = max(4, min(MAX_BUCKETS, int(per_version // RESULTS_PER_BUCKET)))
    return max(span / count, 0.5)
