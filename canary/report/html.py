"""The report page: one self-contained HTML document (no scripts, no external resources)."""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from canary.analysis.stats import percentile
from canary.report.data import (
    VERSIONS,
    Forecast,
    Observation,
    ReportData,
    as_float,
    bucket_width,
    buckets,
)
from canary.report.svg import ACTION_COLORS, CHART_CSS, Band, Chart, Line, fmt_t, svg_chart

COLORS = {"stable": "#2563eb", "canary": "#ea580c"}
OUTCOME_COLORS = {"promoted": "#16a34a", "rolled_back": "#dc2626"}

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


def build_charts(data: ReportData) -> tuple[list[tuple[Chart, str]], float]:
    """The report's three charts (errors, latency, weight) and the bucket width they aggregate."""
    obs = data.observations
    times = [o.t for o in obs] + [d.t for d in data.decisions] + [t for t, _ in data.weights]
    if data.end is not None:
        times.append(data.end)
    times += [t for f in data.forecasts for t, *_ in f.points]
    x_range = (min(0.0, *times) if times else 0.0, max(times, default=1.0))
    width = bucket_width(obs)
    per_version = {v: buckets(obs, v, width) for v in VERSIONS}
    slo = data.slo
    err_limit = as_float(slo.get("success_threshold"))

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
    p95_slo = as_float(slo.get("latency_p95_ms"))
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
    return [(errors, "errors"), (latency, "latency"), (weight, "weight")], width


def chart_panels(data: ReportData, charts: list[tuple[Chart, str]]) -> str:
    """The charts as panels of inline SVG, or a note that nothing was recorded yet."""
    if not (data.observations or data.weights):
        return '<div class="panel empty">No results were recorded.</div>'
    return "".join(
        f'<div class="panel">{svg_chart(c, data.decisions, cid)}</div>' for c, cid in charts
    )


def render(data: ReportData) -> str:
    """The report as one HTML document: no scripts, no external resources, all text escaped."""
    e = html.escape
    obs = data.observations
    charts, width = build_charts(data)
    clock = charts[0][0].x_range[1] - charts[0][0].x_range[0] >= 120
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

    panels = chart_panels(data, charts)
    rows = []
    for i, d in enumerate(data.decisions, 1):
        color = ACTION_COLORS.get(d.action, "#6b7280")
        w = "—" if d.weight is None else f"{d.weight:g}%"
        pred = " (predictive)" if d.predictive else ""
        rows.append(
            f'<tr class="decision-row"><td class="num">{i}</td><td class="num">{e(fmt_t(round(d.t, 1), clock))}</td>'
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
<style>{_CSS}{CHART_CSS}</style></head>
<body><main>
<header><h1>{e(data.title)}<span class="badge" style="background:{badge_color}">{e(outcome.replace("_", " "))}</span></h1>
<div class="meta">{head}</div></header>
{final}
<h2>Over time</h2>
{panels}
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
