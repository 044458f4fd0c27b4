"""Recordings and replay: the format's validation, the schedule rules, causality, export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canary.analysis.engine import EngineSettings
from canary.errors import ConfigError
from canary.probing.result import TransactionResult
from canary.replay import Recording, export_recording, load_recording, parse_recording, replay

TXNS = ["browse", "checkout"]


def recording(
    seconds: float = 400.0,
    *,
    seed: int = 0,
    canary_mult: float = 1.0,
    rate: float = 2.0,
    onset: float = 0.0,
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    obs = []
    for txn, med in zip(TXNS, (80.0, 250.0), strict=True):
        for version in ("stable", "canary"):
            n = int(seconds * rate)
            t = (np.arange(n) + rng.random(n)) / rate
            mult = np.where((version == "canary") & (t >= onset), canary_mult, 1.0)
            lat = med * mult * np.exp(0.35 * rng.standard_normal(n))
            ok = rng.random(n) >= 0.003
            obs += [
                {
                    "t": round(float(a), 3),
                    "version": version,
                    "transaction": txn,
                    "ok": bool(b),
                    "latency_ms": round(float(c), 2),
                    "status": 200 if b else 500,
                }
                for a, b, c in zip(t, ok, lat, strict=True)
            ]
    obs.sort(key=lambda o: o["t"])
    hist = [
        {
            "t": -300.0 + i,
            "version": "stable",
            "transaction": TXNS[i % 2],
            "ok": True,
            "latency_ms": 80.0 * (1 + 2 * (i % 2)) * float(np.exp(0.35 * rng.standard_normal())),
        }
        for i in range(300)
    ]
    return {
        "format": "canary-replay/1",
        "name": "test",
        "rollout": {
            "initial_weight": 10,
            "step_weight": 30,
            "max_weight": 100,
            "step_interval_s": 60,
        },
        "slo": {"success_threshold": 99.0, "latency_p95_ms": 800, "error_budget": 50},
        "transactions": TXNS,
        "history": hist,
        "observations": obs,
    }


def write(tmp_path: Path, doc: dict[str, Any] | str, name: str = "rec.json") -> Path:
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return p


def run(doc: dict[str, Any], **settings: Any) -> list[dict[str, Any]]:
    rec = parse_recording(json.dumps(doc))
    return list(replay(rec, EngineSettings.from_dict(settings)))


def test_healthy_recording_is_promoted_on_schedule() -> None:
    lines = run(recording())
    assert lines[-1] == {"outcome": "promoted", "t": 180.0}
    steps = lines[:-1]
    assert [(ln["t"], ln["weight"], ln["action"]) for ln in steps] == [
        (60.0, 40, "increase"),
        (120.0, 70, "increase"),
        (180.0, 100, "promote"),
    ]
    for ln in steps:
        assert set(ln) == {"t", "weight", "action", "reasons", "predictive"}
        assert ln["predictive"] is False and ln["reasons"]


def test_bad_canary_rolls_back_mid_step_to_weight_zero() -> None:
    # No warm-up: the canary is bad from its first run and this is about the rollback itself.
    lines = run(recording(canary_mult=1.8), warmup_s=0.0)
    assert lines[-1]["outcome"] == "rolled_back"
    last = lines[-2]
    assert last["action"] == "rollback" and last["weight"] == 0
    assert last["t"] < 60 and last["t"] == lines[-1]["t"]


def test_explicit_steps_may_start_with_the_weight_zero_isolated_check() -> None:
    doc = recording(seconds=400)
    doc["rollout"]["steps"] = [0, 30, 100]
    lines = run(doc)
    assert lines[-1]["outcome"] == "promoted"
    assert [ln["weight"] for ln in lines[:-1]] == [30, 100]
    doc["rollout"]["steps"] = [0, 0, 100]
    with pytest.raises(ConfigError, match=r"steps\[1\]"):
        parse_recording(json.dumps(doc))
    doc["rollout"]["steps"] = [-1, 50, 100]
    with pytest.raises(ConfigError, match=r"steps\[0\].*between 0 and 100"):
        parse_recording(json.dumps(doc))


def test_short_recording_is_incomplete() -> None:
    lines = run(recording(seconds=100))
    assert lines[-1]["outcome"] == "incomplete"
    assert [ln["action"] for ln in lines[:-1]] == ["increase"]


def test_schedule_rules_hold_under_holds() -> None:
    # Too few runs per step: every step holds until enough evidence has accumulated.
    lines = run(recording(seconds=900, rate=0.1), max_holds=10, min_samples=8)
    prev_t, prev_w = 0.0, 10
    for ln in lines[:-1]:
        if ln["action"] == "rollback":
            break
        assert ln["t"] - prev_t >= 60 - 1e-9  # never shortened
        assert ln["weight"] - prev_w <= 30  # at most one step_weight per interval
        if ln["action"] == "hold":
            assert ln["weight"] == prev_w
        prev_t, prev_w = ln["t"], ln["weight"]
    assert any(ln.get("action") == "hold" for ln in lines)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cut=st.floats(min_value=30.0, max_value=380.0),
    mult=st.sampled_from([1.0, 1.12, 1.3]),
    onset=st.sampled_from([0.0, 100.0]),
    seed=st.integers(min_value=0, max_value=3),
)
def test_truncating_the_future_never_changes_earlier_decisions(
    cut: float, mult: float, onset: float, seed: int
) -> None:
    doc = recording(seconds=400, seed=seed, canary_mult=mult, onset=onset)
    full = run(doc)
    short = dict(doc, observations=[o for o in doc["observations"] if o["t"] <= cut], end_t=cut)
    part = run(short)
    before = [ln for ln in full[:-1] if ln["t"] <= cut]
    assert part[: len(before)] == before
    assert all(ln["t"] <= cut for ln in part[:-1])


def test_replays_a_full_twenty_five_minute_recording_to_its_end(tmp_path: Path) -> None:
    # How fast is scripts/bench-judge's business (it prints the replay time per recording);
    # a timed assertion here would only fail on a busy machine.
    doc = recording(seconds=1500, rate=3.4)  # 2 transactions x 2 versions x 3.4/s x 25 min
    assert len(doc["observations"]) >= 20_000
    lines = list(replay(load_recording(write(tmp_path, doc))))
    assert lines[-1]["outcome"] in ("promoted", "rolled_back", "incomplete")


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d.pop("rollout"), "rollout: is required"),
        (lambda d: d.update(format="canary-replay/2"), "format"),
        (lambda d: d.update(extra=1), "unknown field 'extra'"),
        (lambda d: d["observations"][3].update(version="blue"), "observations[3].version"),
        (lambda d: d["observations"][5].update(t=-1.0), "observations[5].t"),
        (lambda d: d["observations"][2].update(transaction="nope"), "observations[2].transaction"),
        (lambda d: d["history"][0].update(t=5.0), "history[0].t"),
        (lambda d: d["observations"].reverse(), "not sorted"),
        (lambda d: d["slo"].update(latency_p95_ms=-1), "slo.latency_p95_ms"),
        (lambda d: d["observations"][1].pop("latency_ms"), "observations[1].latency_ms"),
    ],
)
def test_invalid_recordings_name_the_field(tmp_path: Path, mutate: Any, needle: str) -> None:
    doc = recording(seconds=30)
    mutate(doc)
    with pytest.raises(ConfigError) as exc:
        load_recording(write(tmp_path, doc))
    assert needle in str(exc.value)
    assert "rec.json:" in str(exc.value)


def test_not_json_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid JSON"):
        load_recording(write(tmp_path, "{nope"))
    with pytest.raises(ConfigError, match="no such file"):
        load_recording(tmp_path / "missing.json")


def test_optional_fields_may_be_left_out() -> None:
    doc = recording(seconds=30)
    doc.pop("history")
    doc["slo"] = {}
    for o in doc["observations"]:
        o.pop("status", None)
    rec = parse_recording(json.dumps(doc))
    assert rec.slo.success_threshold == 99.0 and rec.history == []


class FakeStore:
    """The slice of Store that export uses, with a live rollout in Unix time."""

    def __init__(self) -> None:
        base = 1_700_000_000.0
        self.base = base
        self.record = {
            "id": "r1",
            "name": "shop",
            "service": "shop",
            "config": {
                "schedule": {
                    "initial_weight": 5,
                    "step_weight": 5,
                    "max_weight": 100,
                    "step_interval": 30.0,
                }
            },
            "transactions": [{"transaction_name": "browse"}, {"name": "checkout"}],
            "slo": {
                "success_threshold": 99.0,
                "error_budget": 5,
                "latency_p95_ms": None,
                "max_latency_increase_pct": 10.0,
                "max_error_rate_increase_pp": 0.5,
                "rollback_on_error_budget": False,
            },
        }
        self.events = [
            ("1-0", {"type": "weight", "t": base - 30, "data": {"weight": 0}}),
            ("2-0", {"type": "weight", "t": base, "data": {"weight": 5}}),
            ("3-0", {"type": "decision", "t": base + 30, "data": {}}),
        ]
        self.results = [
            TransactionResult(base - 20 + i, v, "browse", True, 50.0)
            for i in range(40)
            for v in ("stable", "canary")
        ]

    def load_rollout(self, rollout_id: str) -> dict[str, Any] | None:
        return self.record if rollout_id == "r1" else None

    def read_events(self, rollout_id: str, after: str = "0-0", **_: Any) -> list[Any]:
        return [e for e in self.events if e[0] > after] if after != "0-0" else list(self.events)

    def all_results(self, rollout_id: str) -> list[TransactionResult]:
        return list(self.results)

    def history(self, service: str, transaction: str, **_: Any) -> list[TransactionResult]:
        return [
            TransactionResult(self.base - 500 + i, "stable", transaction, True, 50.0)
            for i in range(10)
        ]


def test_export_builds_a_valid_recording_relative_to_first_traffic() -> None:
    store = FakeStore()
    doc = export_recording(store, "r1")
    assert doc["format"] == "canary-replay/1"
    assert doc["rollout"] == {
        "initial_weight": 5,
        "step_weight": 5,
        "max_weight": 100,
        "step_interval_s": 30.0,
    }
    assert doc["transactions"] == ["browse", "checkout"]
    assert min(o["t"] for o in doc["observations"]) >= 0
    assert max(h["t"] for h in doc["history"]) < 0
    assert all(h["version"] == "stable" for h in doc["history"])
    assert doc["end_t"] == 30.0
    rec: Recording = parse_recording(json.dumps(doc))
    assert len(rec.observations) == 2 * 20
    with pytest.raises(LookupError):
        export_recording(store, "nope")
