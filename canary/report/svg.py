"""Inline SVG line charts for reports and the dashboard: axes, bands, thresholds, decision marks."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from canary.report.data import DecisionMark

ACTION_COLORS = {
    "increase": "#16a34a",
    "hold": "#ca8a04",
    "promote": "#2563eb",
    "rollback": "#dc2626",
}
# Plot geometry (SVG user units; the SVG scales to the page width).
WIDTH, HEIGHT = 1200, 260
LEFT, RIGHT, TOP, BOTTOM = 70, 24, 26, 40
# The charts' own styles, for every page that shows them (the report, the dashboard).
CHART_CSS = """
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
"""


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


def fmt_t(seconds: float, clock: bool = False) -> str:
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


def svg_chart(
    chart: Chart, decisions: Sequence[DecisionMark], css_id: str, *, width: int = WIDTH
) -> str:
    """One chart; a narrower ``width`` keeps text legible where the page is narrow (phones)."""
    x0, x1 = chart.x_range
    if x1 <= x0:
        x1 = x0 + 1.0
    values = [y for ln in chart.lines for _, y in ln.points if math.isfinite(y)]
    values += [hi for b in chart.bands for _, _, hi in b.points]
    values += [v for _, v in chart.thresholds]
    top = chart.y_max if chart.y_max is not None else max(values, default=1.0) * 1.1
    top = max(top, chart.y_floor or 0.0, 1e-9)
    pw, ph = width - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(t: float) -> float:
        return LEFT + (t - x0) / (x1 - x0) * pw

    def sy(v: float) -> float:
        return TOP + ph - min(max(v, 0.0), top) / top * ph

    e = html.escape
    parts = [
        f'<svg id="{e(css_id)}" class="chart" viewBox="0 0 {width} {HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{e(chart.title)}">',
        f'<text class="ctitle" x="{LEFT}" y="16">{e(chart.title)}</text>',
    ]
    for v in _ticks(0.0, top, 5):
        y = sy(v)
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{width - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(
            f'<text class="ytick" x="{LEFT - 8}" y="{y + 4:.1f}">{e(_fmt_y(v))}{e(chart.unit)}</text>'
        )
    clock = x1 - x0 >= 120
    for t in _time_ticks(x0, x1, max(3, width // 120)):
        x = sx(t)
        parts.append(f'<line class="xgrid" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + ph}"/>')
        parts.append(
            f'<text class="xtick" x="{x:.1f}" y="{TOP + ph + 18}">{e(fmt_t(t, clock))}</text>'
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
            f'<line class="slo" x1="{LEFT}" x2="{width - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="slolabel" x="{LEFT + 6}" y="{y - 5:.1f}">{e(label)}</text>'
        )
    for i, d in enumerate(decisions, 1):
        x = sx(d.t)
        color = ACTION_COLORS.get(d.action, "#6b7280")
        tip = f"#{i} {d.action} at {fmt_t(round(d.t, 1), clock)}" + "".join(
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
