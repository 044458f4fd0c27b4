"""A rollout's report: one self-contained HTML file with inline SVG plots, from Redis or a recording."""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from canary.analysis.stats import percentile
from canary.errors import CanaryError, ConfigError
from canary.store import Store

VERSIONS = ("stable", "canary")
COLORS = {"stable": "#2563eb", "canary": "#ea580c"}
ACTION_COLORS = {
    "increase": "#16a34a",
    "hold": "#ca8a04",
    "promote": "#2563eb",
    "rollback": "#dc2626",
}
OUTCOME_COLORS = {"promoted": "#16a34a", "rolled_back": "#dc2626"}
# Plot geometry (SVG user units; the SVG scales to the page width).
WIDTH, HEIGHT = 1200, 260
LEFT, RIGHT, TOP, BOTTOM = 70, 24, 26, 40
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


def _float(value: Any) -> float | None:
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
            weight=_float(d.get("weight")),
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
            pt = _float(p.get("t"))
            if pt is None and _float(p.get("dt")) is not None:
                pt = t + float(p["dt"])
            mean = _float(p.get("mean", p.get("yhat")))
            lo, hi = _float(p.get("lo")), _float(p.get("hi"))
            if pt is not None and mean is not None:
                points.append((pt, mean, mean if lo is None else lo, mean if hi is None else hi))
        if points:
            out.append(
                Forecast(
                    metric=str(item.get("metric") or "p95_ms"),
                    points=sorted(points),
                    threshold=_float(item.get("threshold", item.get("slo"))),
                    probability=_float(item.get("probability")),
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
                w = _float(d.get("weight"))
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


def from_recording(path: str | Path) -> ReportData:
    """A report of a recording (format canary-replay/1; unknown fields are ignored)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from exc
    if not isinstance(doc, dict) or not str(doc.get("format", "")).startswith("canary-replay/"):
        raise ConfigError(f"{path}: format: expected 'canary-replay/1'")
    obs_raw = doc.get("observations")
    if not isinstance(obs_raw, list):
        raise ConfigError(f"{path}: observations: expected a list of results")
    observations = []
    for i, o in enumerate(obs_raw):
        try:
            observations.append(
                Observation(
                    float(o["t"]),
                    str(o["version"]),
                    str(o.get("transaction", "")),
                    bool(o["ok"]),
                    float(o["latency_ms"]),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"{path}: observations[{i}]: {exc!r} (needs t, version, ok, latency_ms)"
            ) from exc
    data = ReportData(
        title=str(doc.get("name") or path.stem),
        source=f"recording {path.name}",
        slo=dict(doc.get("slo") or {}),
        observations=observations,
    )
    for key in ("stable_version", "canary_version"):
        if isinstance(doc.get(key), str):
            setattr(data, key, doc[key])
    outcome = doc.get("outcome")
    for d in doc.get("decisions") or []:
        if not isinstance(d, dict):
            continue
        if "outcome" in d and "action" not in d:
            outcome = d["outcome"]
            continue
        _add_decision(data, d, _float(d.get("t")) or 0.0)
    data.decisions.sort(key=lambda d: d.t)
    data.outcome = str(outcome) if outcome else None
    if data.decisions and not data.outcome:
        last = data.decisions[-1].action
        data.outcome = {"promote": "promoted", "rollback": "rolled_back"}.get(last, "incomplete")
    if data.decisions and data.decisions[-1].action in ("promote", "rollback"):
        data.final_reasons = data.decisions[-1].reasons
    data.weights = _recorded_weights(doc.get("rollout") or {}, data)
    return data


def _recorded_weights(schedule: dict[str, Any], data: ReportData) -> list[tuple[float, float]]:
    """The weight over time: from the decisions when there are some, else the nominal schedule."""
    initial = _float(schedule.get("initial_weight"))
    if data.decisions:
        weights = [(0.0, initial if initial is not None else 0.0)]
        weights += [(d.t, d.weight) for d in data.decisions if d.weight is not None]
        return weights
    step, top = _float(schedule.get("step_weight")), _float(schedule.get("max_weight")) or 100.0
    interval = _float(schedule.get("step_interval_s"))
    if initial is None or not step or not interval or not data.observations:
        return []
    data.weights_nominal = True
    end = max(o.t for o in data.observations)
    out, t, w = [], 0.0, initial
    while t <= end:
        out.append((t, min(w, top)))
        t, w = t + interval, w + step
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


# --- SVG ------------------------------------------------------------------------------------


def _nice_step(span: float, target: int) -> float:
    raw = span / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _ticks(lo: float, hi: float, target: int = 6) -> list[float]:
    step = _nice_step(hi - lo, target)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


_TIME_STEPS = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400)


def _time_ticks(lo: float, hi: float, target: int = 10) -> list[float]:
    """Ticks on whole seconds, minutes or hours, so that the labels read like a clock."""
    raw = (hi - lo) / target
    step = next((s for s in _TIME_STEPS if s >= raw), _nice_step(hi - lo, target))
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt_t(seconds: float, clock: bool = False) -> str:
    """``42s``, or ``m:ss`` (``h:mm:ss``) when ``clock``: long rollouts read better as a clock."""
    if not clock:
        return f"{seconds:g}s"
    sign, seconds = ("-" if seconds < 0 else ""), abs(round(seconds))
    h, rest = divmod(int(seconds), 3600)
    m, s = divmod(rest, 60)
    return f"{sign}{h}:{m:02d}:{s:02d}" if h else f"{sign}{m}:{s:02d}"


def _fmt_y(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 10 else f"{v:g}"


@dataclass
class Line:
    label: str
    points: list[tuple[float, float]]
    color: str
    dash: str = ""
    step: bool = False
    css: str = ""


@dataclass
class Band:
    label: str
    points: list[tuple[float, float, float]]  # (t, lo, hi)
    color: str


@dataclass
class Chart:
    title: str
    unit: str
    x_range: tuple[float, float]
    lines: list[Line] = field(default_factory=list)
    bands: list[Band] = field(default_factory=list)
    thresholds: list[tuple[str, float]] = field(default_factory=list)
    y_max: float | None = None
    y_floor: float | None = None  # the axis never goes lower than this max (e.g. 5 %)


def svg_chart(chart: Chart, decisions: Sequence[DecisionMark], css_id: str) -> str:
    x0, x1 = chart.x_range
    if x1 <= x0:
        x1 = x0 + 1.0
    values = [y for ln in chart.lines for _, y in ln.points if math.isfinite(y)]
    values += [hi for b in chart.bands for _, _, hi in b.points]
    values += [v for _, v in chart.thresholds]
    top = chart.y_max if chart.y_max is not None else max(values, default=1.0) * 1.1
    top = max(top, chart.y_floor or 0.0, 1e-9)
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(t: float) -> float:
        return LEFT + (t - x0) / (x1 - x0) * pw

    def sy(v: float) -> float:
        return TOP + ph - min(max(v, 0.0), top) / top * ph

    e = html.escape
    parts = [
        f'<svg id="{e(css_id)}" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{e(chart.title)}">',
        f'<text class="ctitle" x="{LEFT}" y="16">{e(chart.title)}</text>',
    ]
    for v in _ticks(0.0, top, 5):
        y = sy(v)
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(
            f'<text class="ytick" x="{LEFT - 8}" y="{y + 4:.1f}">{e(_fmt_y(v))}{e(chart.unit)}</text>'
        )
    clock = x1 - x0 >= 120
    for t in _time_ticks(x0, x1, 10):
        x = sx(t)
        parts.append(f'<line class="xgrid" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + ph}"/>')
        parts.append(
            f'<text class="xtick" x="{x:.1f}" y="{TOP + ph + 18}">{e(_fmt_t(t, clock))}</text>'
        )
    parts.append(f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}"/>')
    for band in chart.bands:
        upper = " ".join(f"{sx(t):.1f},{sy(hi):.1f}" for t, _, hi in band.points)
        lower = " ".join(f"{sx(t):.1f},{sy(lo):.1f}" for t, lo, _ in reversed(band.points))
        parts.append(
            f'<polygon class="band" points="{upper} {lower}" fill="{band.color}" '
            f'fill-opacity="0.18" stroke="{band.color}" stroke-opacity="0.5">'
            f"<title>{e(band.label)}</title></polygon>"
        )
    for label, v in chart.thresholds:
        y = sy(v)
        parts.append(
            f'<line class="slo" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="slolabel" x="{LEFT + 6}" y="{y - 5:.1f}">{e(label)}</text>'
        )
    for i, d in enumerate(decisions, 1):
        x = sx(d.t)
        color = ACTION_COLORS.get(d.action, "#6b7280")
        tip = f"#{i} {d.action} at {_fmt_t(round(d.t, 1), clock)}" + "".join(
            f"\n• {r}" for r in d.reasons
        )
        parts.append(
            f'<g class="decision {e(d.action)}"><title>{e(tip)}</title>'
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + ph}" stroke="{color}" '
            f'stroke-width="1.5" stroke-dasharray="4 3"/>'
            f'<circle cx="{x:.1f}" cy="{TOP}" r="8" fill="{color}"/>'
            f'<text class="dnum" x="{x:.1f}" y="{TOP + 3.5}">{i}</text></g>'
        )
    for ln in chart.lines:
        pts = [(t, y) for t, y in ln.points if math.isfinite(y)]
        if not pts:
            continue
        d_attr = f"M{sx(pts[0][0]):.1f},{sy(pts[0][1]):.1f}"
        for t, y in pts[1:]:
            if ln.step:
                d_attr += f" H{sx(t):.1f} V{sy(y):.1f}"
            else:
                d_attr += f" L{sx(t):.1f},{sy(y):.1f}"
        if ln.step:
            d_attr += f" H{sx(x1):.1f}"
        dash = f' stroke-dasharray="{ln.dash}"' if ln.dash else ""
        parts.append(
            f'<path class="series {e(ln.css)}" data-points="{len(pts)}" d="{d_attr}" '
            f'fill="none" stroke="{ln.color}" stroke-width="2.2"{dash}>'
            f"<title>{e(ln.label)}</title></path>"
        )
        if not ln.step:
            parts.extend(
                f'<circle class="pt" cx="{sx(t):.1f}" cy="{sy(y):.1f}" r="2.2" fill="{ln.color}"/>'
                for t, y in pts
            )
    # Legend under the plot area, left to right.
    lx = LEFT
    legend: list[Line | Band] = [*chart.lines, *chart.bands]
    for item in legend:
        color = item.color
        label = item.label
        dash = f' stroke-dasharray="{item.dash}"' if isinstance(item, Line) and item.dash else ""
        parts.append(
            f'<line x1="{lx}" x2="{lx + 22}" y1="{HEIGHT - 8}" y2="{HEIGHT - 8}" stroke="{color}" '
            f'stroke-width="{8 if isinstance(item, Band) else 2.5}"{dash} '
            f'stroke-opacity="{0.35 if isinstance(item, Band) else 1}"/>'
            f'<text class="legend" x="{lx + 28}" y="{HEIGHT - 4}">{e(label)}</text>'
        )
        lx += 40 + 7 * len(label)
    parts.append("</svg>")
    return "".join(parts)


# --- the page -------------------------------------------------------------------------------

_CSS = """
:root { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #111827; }
body { margin: 0; background: #f3f4f6; }
main { max-width: 1240px; margin: 0 auto; padding: 24px; }
header { background: #fff; border-radius: 10px; padding: 18px 22px; box-shadow: 0 1px 3px #0002; }
h1 { margin: 0 0 6px; font-size: 24px; }
h2 { font-size: 17px; margin: 26px 0 8px; }
.meta { color: #4b5563; font-size: 14px; display: flex; flex-wrap: wrap; gap: 6px 22px; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 999px; color: #fff;
  font-weight: 600; font-size: 13px; vertical-align: middle; margin-left: 8px; }
.panel { background: #fff; border-radius: 10px; padding: 10px 12px; margin-top: 14px;
  box-shadow: 0 1px 3px #0002; }
svg.chart { width: 100%; height: auto; display: block; }
svg text { font-size: 12px; fill: #374151; }
.ctitle { font-size: 14px; font-weight: 600; fill: #111827; }
.ytick { text-anchor: end; } .xtick { text-anchor: middle; }
.grid, .xgrid { stroke: #e5e7eb; stroke-width: 1; }
.frame { fill: none; stroke: #d1d5db; }
.slo { stroke: #b91c1c; stroke-width: 1.5; stroke-dasharray: 8 4; }
.slolabel { fill: #b91c1c; font-weight: 600; paint-order: stroke; stroke: #fff; stroke-width: 3px; }
.dnum { fill: #fff; font-size: 10px; font-weight: 700; text-anchor: middle; }
.legend { font-size: 12px; }
table { border-collapse: collapse; width: 100%; background: #fff; font-size: 13px; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid #e5e7eb; vertical-align: top; }
th { background: #f9fafb; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.action { font-weight: 700; }
ul.reasons { margin: 0; padding-left: 18px; }
.final { border-left: 4px solid #6b7280; }
.empty { color: #6b7280; padding: 12px; }
footer { color: #6b7280; font-size: 12px; margin-top: 24px; }
"""


def _fmt_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s" if m else f"{s}s"


def _summary_rows(observations: Sequence[Observation]) -> list[tuple[str, str, int, float, float]]:
    """(transaction, version, n, error rate %, p95 ms) for every transaction, then "all"."""
    names = sorted({o.transaction for o in observations})
    rows = []
    for name in [*names, "all"]:
        for v in VERSIONS:
            g = [o for o in observations if o.version == v and name in ("all", o.transaction)]
            if g:
                err = 100.0 * sum(1 for o in g if not o.ok) / len(g)
                rows.append((name, v, len(g), err, percentile([o.latency_ms for o in g], 95)))
    return rows


def _reasons(reasons: Iterable[str]) -> str:
    items = "".join(f"<li>{html.escape(r)}</li>" for r in reasons)
    return f'<ul class="reasons">{items}</ul>' if items else "—"


def _add_forecast(f: Forecast, errors: Chart, latency: Chart, p95_slo: float | None) -> None:
    """Draw a forecast band on the chart of its metric (success rates become error rates)."""
    label = f"forecast {f.metric}" + (
        f" (p breach {f.probability:.2f})" if f.probability is not None else ""
    )
    color = "#7c3aed"
    if f.metric in ("error_rate_pct", "success_rate"):
        flip = f.metric == "success_rate"
        pts = [
            (t, 100.0 - m, 100.0 - hi, 100.0 - lo) if flip else (t, m, lo, hi)
            for t, m, lo, hi in f.points
        ]
        errors.bands.append(Band(label, [(t, lo, hi) for t, _, lo, hi in pts], color))
        errors.lines.append(Line("forecast mean", [(t, m) for t, m, _, _ in pts], color, "2 3"))
        limit = None if f.threshold is None else 100.0 - f.threshold if flip else f.threshold
        if limit is not None and all(abs(limit - v) > 1e-9 for _, v in errors.thresholds):
            errors.thresholds.append((f"forecast objective {limit:g}%", limit))
        return
    latency.bands.append(Band(label, [(t, lo, hi) for t, _, lo, hi in f.points], color))
    latency.lines.append(Line("forecast mean", [(t, m) for t, m, _, _ in f.points], color, "2 3"))
    if f.threshold is not None and f.threshold != p95_slo:
        latency.thresholds.append((f"forecast objective {f.threshold:g} ms", f.threshold))


def render(data: ReportData) -> str:
    """The report as one HTML document: no scripts, no external resources, all text escaped."""
    e = html.escape
    obs = data.observations
    times = [o.t for o in obs] + [d.t for d in data.decisions] + [t for t, _ in data.weights]
    if data.end is not None:
        times.append(data.end)
    times += [t for f in data.forecasts for t, *_ in f.points]
    x_range = (min(0.0, *times) if times else 0.0, max(times, default=1.0))
    clock = x_range[1] - x_range[0] >= 120
    width = bucket_width(obs)
    per_version = {v: buckets(obs, v, width) for v in VERSIONS}
    slo = data.slo
    err_limit = _float(slo.get("success_threshold"))

    errors = Chart("Error rate per version", "%", x_range, y_floor=5.0)
    latency = Chart("Latency per version (p50 dashed, p95 solid)", " ms", x_range)
    for v in VERSIONS:
        bs = per_version[v]
        errors.lines.append(
            Line(f"{v} error rate", [(b.t, b.error_rate_pct) for b in bs], COLORS[v], css=v)
        )
        latency.lines.append(Line(f"{v} p95", [(b.t, b.p95_ms) for b in bs], COLORS[v], css=v))
        latency.lines.append(
            Line(f"{v} p50", [(b.t, b.p50_ms) for b in bs], COLORS[v], dash="5 4", css=v)
        )
    if err_limit is not None:
        errors.thresholds.append((f"SLO: ≤ {100 - err_limit:g}% errors", 100.0 - err_limit))
    p95_slo = _float(slo.get("latency_p95_ms"))
    if p95_slo is not None:
        latency.thresholds.append((f"SLO: p95 ≤ {p95_slo:g} ms", p95_slo))
    for f in data.forecasts:
        _add_forecast(f, errors, latency, p95_slo)
    weight = Chart(
        "Canary weight" + (" (nominal schedule)" if data.weights_nominal else ""),
        "%",
        x_range,
        y_max=100.0,
    )
    if data.weights:
        weight.lines.append(
            Line("canary weight", data.weights, COLORS["canary"], step=True, css="weight")
        )

    outcome = data.outcome or data.state or "in progress"
    badge_color = OUTCOME_COLORS.get(outcome, "#6b7280")
    started = (
        time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(data.started_at))
        if data.started_at
        else "—"
    )
    meta = [
        ("source", data.source),
        ("stable", data.stable_version or "—"),
        ("canary", data.canary_version or "—"),
        ("started", started),
        ("duration", _fmt_duration(data.duration)),
        ("results", f"{len(obs):,}"),
        ("decisions", str(len(data.decisions))),
    ]
    head = "".join(f"<span><b>{e(k)}</b>: {e(v)}</span>" for k, v in meta)

    charts = (
        "".join(
            f'<div class="panel">{svg_chart(c, data.decisions, cid)}</div>'
            for c, cid in ((errors, "errors"), (latency, "latency"), (weight, "weight"))
        )
        if obs or data.weights
        else '<div class="panel empty">No results were recorded.</div>'
    )
    rows = []
    for i, d in enumerate(data.decisions, 1):
        color = ACTION_COLORS.get(d.action, "#6b7280")
        w = "—" if d.weight is None else f"{d.weight:g}%"
        pred = " (predictive)" if d.predictive else ""
        rows.append(
            f'<tr class="decision-row"><td class="num">{i}</td><td class="num">{e(_fmt_t(round(d.t, 1), clock))}</td>'
            f'<td class="num">{e(w)}</td><td class="action" style="color:{color}">{e(d.action)}{e(pred)}</td>'
            f"<td>{_reasons(d.reasons)}</td></tr>"
        )
    decisions_html = (
        "<table><tr><th>#</th><th>at</th><th>weight</th><th>action</th><th>reasons</th></tr>"
        + "".join(rows)
        + "</table>"
        if rows
        else '<div class="panel empty">No decisions were recorded.</div>'
    )
    summary = "".join(
        f'<tr><td>{e(name)}</td><td style="color:{COLORS[v]}">{e(v)}</td><td class="num">{n:,}</td>'
        f'<td class="num">{err:.1f}%</td><td class="num">{p95:,.0f} ms</td></tr>'
        for name, v, n, err, p95 in _summary_rows(obs)
    )
    final = (
        f"<h2>Why it ended: {e(outcome.replace('_', ' '))}</h2>"
        f'<div class="panel final" style="border-color:{badge_color}">{_reasons(data.final_reasons)}</div>'
        if data.final_reasons
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>canary report: {e(data.title)}</title>
<style>{_CSS}</style></head>
<body><main>
<header><h1>{e(data.title)}<span class="badge" style="background:{badge_color}">{e(outcome.replace("_", " "))}</span></h1>
<div class="meta">{head}</div></header>
{final}
<h2>Over time</h2>
{charts}
<h2>Decisions</h2>
{decisions_html}
<h2>Results by transaction</h2>
<table><tr><th>transaction</th><th>version</th><th>results</th><th>error rate</th><th>p95</th></tr>{summary}</table>
<footer>Generated by canary on {e(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))}; time is measured from the start; each point aggregates {width:.1f} s of results.</footer>
</main></body></html>
"""


def write_report(data: ReportData, out: str | Path) -> Path:
    path = Path(out)
    path.write_text(render(data), encoding="utf-8")
    return path
