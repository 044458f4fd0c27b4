"""The dashboard's fragments: every value escaped, the buttons that fit the state, steps in words."""

from __future__ import annotations

import re

from canary.dashboard import render
from canary.dashboard.view import (
    AlertView,
    RolloutView,
    TransactionRow,
    VersionStats,
    summary_of,
)
from canary.report import DecisionMark, Forecast, Observation, ReportData

EVIL = '<script>alert("x")</script>'


def record(state: str = "running", **extra: object) -> dict[str, object]:
    return {
        "id": "shop-1",
        "name": f"shop {EVIL}",
        "state": state,
        "outcome": None,
        "step": 2,
        "weight": 10,
        "weights": [0, 5, 10, 30, 60, 100],
        "created_at": 1_700_000_000.0,
        "updated_at": 1_700_000_060.0,
        "config": {
            "stable": {"url": "http://s", "version": "1.0"},
            "canary": {"url": "http://c", "version": f"2.0{EVIL}"},
        },
        "decisions": [{"action": "hold", "reasons": [EVIL]}],
        **extra,
    }


def view(state: str = "running") -> RolloutView:
    obs = [
        Observation(t / 2, v, f"checkout{EVIL}", True, 40.0 + (v == "canary") * 30)
        for t in range(120)
        for v in ("stable", "canary")
    ]
    data = ReportData(
        title="shop",
        source="rollout shop-1",
        observations=obs,
        decisions=[
            DecisionMark(20.0, "increase", 5, ["fine"]),
            DecisionMark(40.0, "hold", 10, [EVIL], predictive=False),
        ],
        weights=[(0.0, 0.0), (20.0, 5.0), (40.0, 10.0)],
        forecasts=[Forecast("p95_ms", [(40.0, 70, 60, 80), (60.0, 90, 70, 120)], 100, 0.4)],
        slo={"latency_p95_ms": 100},
    )
    return RolloutView(
        summary=summary_of(record(state)),
        stable_url="http://s",
        canary_url=f"http://c/{EVIL}",
        reasons=[EVIL],
        data=data,
        rows=[
            TransactionRow(
                f"checkout{EVIL}", VersionStats(60, 100.0, 41.0), VersionStats(60, 95.0, 71.0)
            )
        ],
        rows_scope="this step (weight 10%)",
        alerts=[AlertView(30.0, "failure", "warning", EVIL, [EVIL], ["slack"])],
    )


def test_every_value_is_escaped() -> None:
    for html in (render.rollout(view()), render.fleet([summary_of(record())])):
        assert "<script" not in html
        assert "&lt;script&gt;" in html
    page = render.page(EVIL, "/stream", "", csrf='"><script>')
    assert "<script>" not in page and 'content="&quot;&gt;&lt;script&gt;"' in page


def test_steps_read_as_words_with_the_next_weight() -> None:
    html = render.rollout(view())
    assert "step 3 of 6 (weight 10%, next 30%)" in html
    assert "Transactions, this step (weight 10%)" in html
    # The canary's worse p95 stands out; its success too.
    assert html.count('class="num canary worse"') == 2


def test_buttons_follow_the_state() -> None:
    def actions(state: str) -> list[str]:
        return re.findall(r'data-action="(\w+)"', render.rollout(view(state)))

    assert actions("running") == ["pause", "promote", "abort"]
    assert actions("paused") == ["resume", "promote", "abort"]
    assert actions("rolled_back") == []


def test_a_finished_rollout_says_how_it_ended() -> None:
    html = render.rollout(view("rolled_back"))
    assert "How it ended: rolled back, traffic back on stable" in html
    assert "step 3 of 6 (weight 10%)" in html  # no "next" once it ended


def test_charts_come_wide_and_narrow_with_the_forecast_band() -> None:
    html = render.rollout(view())
    ids = re.findall(r'<svg id="([\w-]+)"', html)
    assert ids == [
        "weight",
        "weight-narrow",
        "latency",
        "latency-narrow",
        "errors",
        "errors-narrow",
    ]
    assert html.count('class="band"') == 2  # the latency forecast, wide and narrow
    assert html.count('<tr class="decision-row') == 2


def test_the_table_shows_the_last_step_that_has_results() -> None:
    from canary.dashboard.view import _scope

    v = view()
    # Just after the weight rose to 10% at t=40, no result of that step yet: the 5% step shows.
    v.data.observations = [o for o in v.data.observations if o.t < 40]
    assert _scope(v.summary, v.data) == (20.0, 40.0, "last step with results (weight 5%)")
    v.data.observations.append(Observation(41.0, "canary", "checkout", True, 40.0))
    assert _scope(v.summary, v.data) == (40.0, float("inf"), "this step (weight 10%)")
    assert _scope(view("promoted").summary, v.data)[2] == "whole rollout"
