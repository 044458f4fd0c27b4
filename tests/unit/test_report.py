"""The HTML report from a recording: plots drawn from the data, decisions marked, text escaped."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from canary import report
from canary.errors import ConfigError

EVIL = '<script>alert("x")</script>'


def recording() -> dict[str, Any]:
    """Four minutes: a healthy start, then the canary slows down and fails more and more."""
    rng = random.Random(7)
    obs = []
    for i in range(480):
        t = i * 0.5
        for version in ("stable", "canary"):
            bad = version == "canary" and t > 120
            lat = rng.gauss(40, 5) + (2.0 * (t - 120) if bad else 0)
            ok = rng.random() > (0.15 if bad else 0.005)
            o = {"t": t, "version": version, "transaction": "checkout", "ok": ok, "latency_ms": lat}
            if not ok:
                o["error"] = EVIL
            obs.append(o)
    return {
        "format": "canary-replay/1",
        "name": "checkout-drift",
        "rollout": {
            "initial_weight": 10,
            "step_weight": 20,
            "max_weight": 100,
            "step_interval_s": 60,
        },
        "slo": {"success_threshold": 95.0, "latency_p95_ms": 250},
        "transactions": ["checkout"],
        "history": [],
        "observations": obs,
    }


def marked(data: report.ReportData) -> report.ReportData:
    """The recording's data with hand-written decisions: a hold with markup, a predictive rollback."""
    data.decisions = [
        report.DecisionMark(60.0, "increase", 30, ["all checks within tolerance"]),
        report.DecisionMark(120.0, "increase", 50, ["ok"]),
        report.DecisionMark(180.0, "hold", 50, ["checkout p95 inconclusive (n=41)", EVIL]),
        report.DecisionMark(
            210.0,
            "rollback",
            0,
            ["checkout p95 forecast to exceed 250 ms within 60 s (p=0.97)"],
            predictive=True,
        ),
    ]
    data.forecasts = [
        report.Forecast(
            "p95_ms",
            [(210.0 + dt, 190 + dt, 160 + dt / 2, 220 + 1.5 * dt) for dt in range(0, 61, 10)],
            threshold=250,
            probability=0.97,
        )
    ]
    data.weights = [(0.0, 10.0), (60.0, 30.0), (120.0, 50.0), (210.0, 0.0)]
    data.outcome, data.final_reasons = "rolled_back", data.decisions[-1].reasons
    return data


def write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "rec.json"
    path.write_text(json.dumps(doc))
    return path


def test_recording_is_replayed_through_the_analysis(tmp_path: Path) -> None:
    from canary import replay

    path = write(tmp_path, recording())
    data = report.from_recording(path)
    lines = list(replay.replay(replay.load_recording(path)))
    assert data.outcome == lines[-1]["outcome"] == "rolled_back"
    assert [d.action for d in data.decisions] == [ln["action"] for ln in lines[:-1]]
    assert data.decisions[-1].action == "rollback" and data.final_reasons
    assert data.weights[0] == (0.0, 10.0) and data.weights[-1][1] == 0.0
    assert not data.weights_nominal


def test_report_has_plots_decisions_and_reasons(tmp_path: Path) -> None:
    data = marked(report.from_recording(write(tmp_path, recording()), analyse=False))
    page = report.render(data)
    for chart in ("errors", "latency", "weight"):
        assert f'<svg id="{chart}"' in page
    # Every version's series is a path with many points; the weight is a step line.
    counts = [int(n) for n in re.findall(r'class="series [a-z]+" data-points="(\d+)"', page)]
    assert len(counts) >= 7 and min(counts) >= 2
    assert page.count('<g class="decision ') == 4 * 3  # each decision on each of the 3 charts
    assert 'class="band"' in page and "p breach 0.97" in page
    assert "SLO: p95 ≤ 250 ms" in page and "SLO: ≤ 5% errors" in page
    assert "rolled back" in page and "(predictive)" in page


def test_text_is_escaped_and_nothing_is_fetched(tmp_path: Path) -> None:
    page = report.render(marked(report.from_recording(write(tmp_path, recording()))))
    assert "<script" not in page
    assert "&lt;script&gt;" in page
    # Self-contained: no external resources, links or scripts.
    assert not re.search(r"""(src|href)\s*=|@import|url\(""", page)


def test_without_analysis_the_weight_follows_the_nominal_schedule(tmp_path: Path) -> None:
    data = report.from_recording(write(tmp_path, recording()), analyse=False)
    assert data.weights_nominal
    assert data.weights[:3] == [(0.0, 10.0), (60.0, 30.0), (120.0, 50.0)]
    assert data.outcome is None
    page = report.render(data)
    assert "nominal schedule" in page and "No decisions were recorded." in page


def test_buckets_aggregate_per_version() -> None:
    obs = [report.Observation(t, "canary", "x", t < 5, 10.0 * (t + 1)) for t in range(10)]
    got = report.buckets(obs, "canary", 5.0)
    assert [b.n for b in got] == [5, 5]
    assert got[0].error_rate_pct == 0 and got[1].error_rate_pct == 100
    assert got[0].p50_ms == pytest.approx(30.0)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"format": "other"}, "format"),
        ({**recording(), "observations": [{"t": 0}]}, r"observations\[0\]"),
        ({**recording(), "decisions": []}, "decisions"),
    ],
)
def test_bad_recordings_name_the_field(tmp_path: Path, doc: dict[str, Any], message: str) -> None:
    # The same parser as `canary replay`: file:line:col, then the field at fault.
    with pytest.raises(ConfigError, match=rf"rec\.json:\d+:\d+: .*{message}"):
        report.from_recording(write(tmp_path, doc))


def test_cli_writes_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from canary.cli import report as cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    out = tmp_path / "out.html"
    args = parser.parse_args(["report", str(write(tmp_path, recording())), "-o", str(out)])
    assert args.func(args) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert str(out) in capsys.readouterr().out


def test_cli_finds_what_canary_run_kept_by_rollout_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After `canary run` its private Redis is gone; `canary report ID` reads the kept recording."""
    import argparse

    from canary.cli import report as cli

    monkeypatch.setenv("CANARY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CANARY_REDIS_URL", raising=False)
    folder = tmp_path / "home" / "runs" / "shop-20260101-000000-abcd"
    folder.mkdir(parents=True)
    (folder / "recording.json").write_text(json.dumps(recording()))
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    out = tmp_path / "kept.html"
    args = parser.parse_args(["report", "shop-20260101-000000-abcd", "-o", str(out)])
    assert args.func(args) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
