"""The dashboard's HTML: the page shell and the live fragments, every value escaped here."""

from __future__ import annotations

import html
import time
from collections.abc import Iterable

from canary.dashboard.view import RolloutView, Summary, VersionStats
from canary.report import build_charts
from canary.report.svg import fmt_t, svg_chart

e = html.escape
STATE_CLASS = {
    "running": "running",
    "paused": "paused",
    "promoted": "good",
    "rolled_back": "bad",
    "aborted": "bad",
    "failed": "bad",
}
NARROW = 560  # SVG units of a phone's charts: its text stays near 12 px on a 390 px screen
BUTTONS = {
    "pause": "Pause",
    "resume": "Resume",
    "promote": "Promote now",
    "abort": "Abort (back to stable)",
}


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts)) if ts else "—"


def _badge(state: str) -> str:
    css = STATE_CLASS.get(state, "other")
    return f'<span class="badge {css}" data-state="{e(state)}">{e(state.replace("_", " "))}</span>'


def page(title: str, stream: str, body: str, csrf: str, *, back: bool = False) -> str:
    """The whole page: the fragment ``body`` goes in #live, which the stream replaces."""
    nav = '<a class="back" href="/">← all rollouts</a>' if back else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="{e(csrf)}">
<title>{e(title)} · canary</title>
<link rel="stylesheet" href="/static/dashboard.css">
<link rel="stylesheet" href="/charts.css">
<script src="/static/dashboard.js" defer></script>
</head><body>
<header class="top"><a class="brand" href="/">canary</a>{nav}
<span id="conn" class="conn" data-state="connecting">connecting…</span></header>
<div id="flash" class="flash" role="status" aria-live="polite"></div>
<main id="live" data-stream="{e(stream)}">{body}</main>
</body></html>
"""


def fleet(summaries: list[Summary]) -> str:
    """The list of running and recent rollouts, one card each."""
    cards = []
    for s in summaries:
        progress = s.progress.text(final=s.final)
        last = (
            f'<div class="last"><b>{e(s.last_action)}</b>'
            + (f": {e(s.last_reason)}" if s.last_reason else "")
            + "</div>"
            if s.last_action
            else ""
        )
        cards.append(
            f'<a class="card rollout-card" href="/rollouts/{e(s.id)}" data-id="{e(s.id)}">'
            f'<div class="card-head"><span class="name">{e(s.name)}</span>{_badge(s.state)}</div>'
            f'<div class="versions">{e(s.stable_version)} → {e(s.canary_version)}</div>'
            f'<div class="progress">{e(progress)}</div>'
            f'<div class="meter"><span class="w{_tenth(s.progress.weight)}"></span></div>'
            f"{last}"
            f'<div class="small">{e(s.id)} · started {e(_when(s.created_at))}</div></a>'
        )
    running = sum(1 for s in summaries if not s.final)
    head = f'<h1>Rollouts</h1><p class="sub">{running} running · newest first</p>'
    if not cards:
        return (
            head
            + '<p class="empty">No rollouts yet. Start one with <code>canary rollout start FILE</code>.</p>'
        )
    return head + f'<div class="cards">{"".join(cards)}</div>'


def _tenth(weight: int) -> int:
    """The weight meter's width class (w0..w10): no inline styles, so the CSP can forbid them."""
    return max(0, min(10, round(weight / 10)))


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}%"


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f} ms"


def _cell(stable: VersionStats, canary: VersionStats, which: str) -> str:
    fmt = _pct if which == "success" else _ms
    s = stable.success_pct if which == "success" else stable.p95_ms
    c = canary.success_pct if which == "success" else canary.p95_ms
    worse = (
        s is not None
        and c is not None
        and ((which == "success" and c < s - 1e-9) or (which == "p95" and c > s * 1.1))
    )
    return (
        f'<td class="num stable">{e(fmt(s))}</td>'
        f'<td class="num canary{" worse" if worse else ""}">{e(fmt(c))}</td>'
    )


def _reasons(reasons: Iterable[str]) -> str:
    items = "".join(f"<li>{e(r)}</li>" for r in reasons)
    return f'<ul class="reasons">{items}</ul>' if items else "—"


def rollout(view: RolloutView) -> str:
    """Everything about one rollout; the stream sends this again whenever its events change."""
    s = view.summary
    data = view.data
    clock = (data.duration or 0) >= 120
    buttons = "".join(
        f'<button type="button" class="act {a}" data-action="{a}" data-rollout="{e(s.id)}">'
        f"{e(BUTTONS[a])}</button>"
        for a in view.actions
    )
    ended = ""
    if s.final:
        where = "all traffic on the canary" if s.state == "promoted" else "traffic back on stable"
        outcome = f"{s.state.replace('_', ' ')}, {where}"
        ended = (
            f'<section class="panel ended {STATE_CLASS.get(s.state, "other")}">'
            f"<h2>How it ended: {e(outcome)}</h2>{_reasons(view.reasons)}</section>"
        )
    rows = "".join(
        f"<tr><td>{e(r.transaction)}</td>{_cell(r.stable, r.canary, 'success')}"
        f"{_cell(r.stable, r.canary, 'p95')}"
        f'<td class="num n">{r.stable.n:,} / {r.canary.n:,}</td></tr>'
        for r in view.rows
    )
    table = (
        '<div class="scroll"><table class="tx"><thead><tr><th rowspan="2">transaction</th>'
        '<th colspan="2">success</th><th colspan="2">p95</th><th rowspan="2" class="n">results</th></tr>'
        '<tr><th class="stable">stable</th><th class="canary">canary</th>'
        '<th class="stable">stable</th><th class="canary">canary</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
        if rows
        else '<p class="empty">No results yet.</p>'
    )
    charts, _width = build_charts(data)
    order = {"weight": 0, "latency": 1, "errors": 2}
    # Drawn twice, wide and narrow, and the stylesheet shows the one that fits the screen.
    svgs = "".join(
        f'<div class="chart-box wide">{svg_chart(c, data.decisions, cid)}</div>'
        f'<div class="chart-box narrow">'
        f"{svg_chart(c, data.decisions, cid + '-narrow', width=NARROW)}</div>"
        for c, cid in sorted(charts, key=lambda x: order[x[1]])
        if data.observations or data.weights
    )
    decisions = "".join(
        f'<tr class="decision-row {e(d.action)}"><td class="num">{i}</td>'
        f'<td class="num">{e(fmt_t(round(d.t, 1), clock))}</td>'
        f'<td class="num">{"—" if d.weight is None else e(f"{d.weight:g}%")}</td>'
        f'<td class="action {e(d.action)}">{e(d.action)}'
        f"{' <small>(predictive)</small>' if d.predictive else ''}</td>"
        f"<td>{_reasons(d.reasons)}</td></tr>"
        for i, d in reversed(list(enumerate(data.decisions, 1)))
    )
    decisions_html = (
        '<div class="scroll"><table class="decisions"><thead><tr><th>#</th><th>at</th>'
        "<th>weight</th><th>action</th><th>reasons</th></tr></thead>"
        f"<tbody>{decisions}</tbody></table></div>"
        if decisions
        else '<p class="empty">No decision yet.</p>'
    )
    alerts = "".join(
        f'<li class="alert {e(a.severity)}"><b>{e(a.kind)}</b> at {e(fmt_t(round(a.t, 1), clock))}: '
        f"{e(a.summary)}"
        + (
            f' <span class="small">(failed: {e(", ".join(a.failed_channels))})</span>'
            if a.failed_channels
            else ""
        )
        + f"{_reasons(a.reasons)}</li>"
        for a in view.alerts
    )
    forecast = (
        '<p class="small">The shaded band is the analysis\'s forecast.</p>'
        if data.forecasts
        else ""
    )
    return f"""<section class="panel head" data-rollout="{e(s.id)}" data-state="{e(s.state)}">
<div class="title"><h1>{e(s.name)}</h1>{_badge(s.state)}</div>
<div class="versions">stable <b>{e(s.stable_version)}</b> <span class="small">{e(view.stable_url)}</span>
→ canary <b>{e(s.canary_version)}</b> <span class="small">{e(view.canary_url)}</span></div>
<div class="progress" id="progress">{e(s.progress.text(final=s.final))}</div>
<div class="meter"><span class="w{_tenth(s.progress.weight)}"></span></div>
<div class="small">{e(s.id)} · started {e(_when(s.created_at))} ·
<a href="/rollouts/{e(s.id)}/report" target="_blank" rel="noopener">report</a></div>
<div class="actions">{buttons}</div>
</section>
{ended}
<section class="panel"><h2>Transactions, {e(view.rows_scope)}</h2>{table}</section>
<section class="panel"><h2>Over time</h2>{forecast}{svgs or '<p class="empty">No results yet.</p>'}</section>
<section class="panel"><h2>Decisions (newest first)</h2>{decisions_html}</section>
<section class="panel"><h2>Alerts</h2>{f'<ul class="alerts">{alerts}</ul>' if alerts else '<p class="empty">No alerts.</p>'}</section>
"""


def unknown(rollout_id: str) -> str:
    return (
        f'<section class="panel"><h1>No rollout {e(rollout_id)}</h1>'
        '<p class="empty">It may have expired (finished rollouts are kept 30 days).</p></section>'
    )
