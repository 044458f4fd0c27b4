"""The field generator: its noise has the shapes it claims, each class keeps its truth."""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np
import pytest

from canary.bench import field_noise as fn
from canary.bench.field import generate_field, plan, schedule_weight
from canary.bench.run import main
from canary.bench.scenarios import BAD, HEALTHY, generate
from canary.probing.result import TransactionResult
from canary.replay import Recording, parse_recording


@functools.cache
def draw(kind: str, seed: int) -> Recording:
    return generate_field(kind, seed)[0]


def runs(rec: Recording, version: str, txn: str | None = None) -> list[TransactionResult]:
    return [
        r
        for r in rec.observations
        if r.version == version and (txn is None or r.transaction == txn)
    ]


def bucket_means(rs: list[TransactionResult], width: float, end: float) -> np.ndarray:
    """Mean log latency of the passing runs in each ``width``-second bucket."""
    t = np.array([r.t for r in rs if r.ok])
    x = np.log([r.latency_ms for r in rs if r.ok])
    idx = (t // width).astype(int)
    n = int(end // width)
    return np.array([x[idx == i].mean() for i in range(n)])


def test_same_seed_same_recording_and_not_another_generators() -> None:
    a, ta = generate_field("latency-drift", 5)
    b, tb = generate_field("latency-drift", 5)
    assert ta == tb == plan("latency-drift", 5)[3]
    assert [r.latency_ms for r in a.observations[:200]] == [
        r.latency_ms for r in b.observations[:200]
    ]
    other = generate("latency-drift", 5)[0]
    assert [r.latency_ms for r in a.observations[:50]] != [
        r.latency_ms for r in other.observations[:50]
    ]
    assert a.description is not None and a.description.startswith("field:")


def test_every_class_keeps_its_truth() -> None:
    for kind in HEALTHY:
        t = plan(kind, 1)[3]
        assert not t.bad and t.onset_t is None and t.breach_t is None, kind
    for kind in BAD:
        t = plan(kind, 1)[3]
        assert t.bad and t.onset_t is not None and t.onset_t >= 0, kind
        if t.drift is not None:
            assert t.breach_t is not None and t.onset_t < t.breach_t < 1500, kind


def test_a_recording_is_valid_replay_json_and_sorted() -> None:
    rec = draw("shared-errors", 0)
    again = parse_recording(json.dumps(rec.to_dict()), "x")
    assert len(again.observations) == len(rec.observations)
    ts = [r.t for r in rec.observations]
    assert ts == sorted(ts) and ts[0] >= 0
    assert all(r.t < 0 and r.version == "stable" for r in rec.history)


def test_probes_are_paired_per_instant_with_small_jitter() -> None:
    rec = draw("identical", 0)
    for txn in rec.transactions:
        s = np.array([r.t for r in runs(rec, "stable", txn)])
        c = np.array([r.t for r in runs(rec, "canary", txn)])
        assert len(s) == len(c)
        # Each canary run has a stable run of the same instant, well under a second away.
        gap = np.abs(s[np.clip(np.searchsorted(s, c), 0, len(s) - 1)] - c)
        gap = np.minimum(gap, np.abs(s[np.clip(np.searchsorted(s, c) - 1, 0, None)] - c))
        assert np.quantile(gap, 0.99) < 0.3


def test_the_low_volume_classes_run_at_their_rate() -> None:
    for seed in range(3):
        rec = draw("very-low-volume", seed)
        for txn in rec.transactions:
            rate = len(runs(rec, "canary", txn)) / 1500.0
            assert 0.18 < rate < 0.42, (seed, txn, rate)
    assert 10 <= len(draw("many-txns", 0).transactions) <= 30
    assert len(plan("one-bad-of-12", 0)[1].txns) == 12


def test_warm_up_is_up_to_twice_as_slow_and_decays_with_a_blip_of_errors() -> None:
    ratios_early, ratios_late, blips = [], [], 0
    for seed in range(3):
        rec = draw("warm-up", seed)
        s, c = runs(rec, "stable"), runs(rec, "canary")

        def med(rs: list[TransactionResult], lo: float, hi: float) -> float:
            return float(np.median([r.latency_ms for r in rs if r.ok and lo <= r.t < hi]))

        ratios_early.append(med(c, 0, 8) / med(s, 0, 8))
        ratios_late.append(med(c, 180, 600) / med(s, 180, 600))
        blips += sum(not r.ok for r in c if r.t < 20) - sum(not r.ok for r in s if r.t < 20)
    assert all(1.3 < x < 2.3 for x in ratios_early), ratios_early
    assert all(0.9 < x < 1.1 for x in ratios_late), ratios_late
    assert blips > 0


def overdispersion(rec: Recording, txn: str, shuffle: bool = False) -> float:
    """How much more the canary-minus-stable difference of per-minute mean log latency
    spreads than the runs' own variance says it should (1 for independent runs)."""
    diffs, expected = [], []
    order = np.random.default_rng(0)
    per: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for v in ("stable", "canary"):
        rs = [r for r in runs(rec, v, txn) if r.ok]
        t = np.array([r.t for r in rs])
        x = np.log([r.latency_ms for r in rs])
        per[v] = (t, order.permutation(x) if shuffle else x)
    for i in range(25):
        parts = []
        for v in ("stable", "canary"):
            t, x = per[v]
            xs = x[(t >= 60 * i) & (t < 60 * (i + 1))]
            parts.append((xs.mean(), xs.var(ddof=1) / len(xs)))
        diffs.append(parts[1][0] - parts[0][0])
        expected.append(parts[0][1] + parts[1][1])
    return float(np.var(diffs, ddof=1) / np.mean(expected))


def test_wander_makes_runs_a_minute_apart_alike() -> None:
    # Each version's own slow wander: per-minute means differ between the versions by more
    # than their runs' variance allows, which a time-shuffled copy of the same runs does not.
    for seed in range(3):
        rec = draw("wander", seed)
        ratio = np.mean([overdispersion(rec, txn) for txn in rec.transactions])
        shuffled = np.mean([overdispersion(rec, txn, shuffle=True) for txn in rec.transactions])
        assert ratio > 1.6 and shuffled < 1.5, (seed, ratio, shuffled)


def test_the_infrastructure_moves_both_versions_together() -> None:
    rec = draw("infra-step", 2)
    txn = rec.transactions[-1]
    s = bucket_means(runs(rec, "stable", txn), 60.0, 1500.0)
    c = bucket_means(runs(rec, "canary", txn), 60.0, 1500.0)
    assert float(np.corrcoef(s, c)[0, 1]) > 0.6


def test_shared_incidents_fail_both_versions_at_the_same_instants() -> None:
    rec = draw("shared-errors", 3)
    s = np.array([r.t for r in runs(rec, "stable") if not r.ok])
    c = np.array([r.t for r in runs(rec, "canary") if not r.ok])
    assert len(s) > 20 and len(c) > 20
    near = np.abs(s[np.clip(np.searchsorted(s, c), 0, len(s) - 1)] - c) < 1.0
    assert near.mean() > 0.5
    assert 0.6 < len(c) / len(s) < 1.6


def test_failures_read_like_probe_errors() -> None:
    rec = draw("shared-errors", 3)
    failed = [r for r in rec.observations if not r.ok]
    assert all(r.error and r.error.startswith("step ") for r in failed)
    assert any(r.status is None for r in failed) and any(r.status == 500 for r in failed)
    assert all(r.latency_ms <= fn.TIMEOUT_MS for r in rec.observations)


def test_an_error_step_is_one_to_two_points_over_stable() -> None:
    gaps = []
    for seed in range(3):
        rec = draw("error-step", seed)
        s, c = runs(rec, "stable"), runs(rec, "canary")
        gaps.append(sum(not r.ok for r in c) / len(c) - sum(not r.ok for r in s) / len(s))
    assert all(0.006 < g < 0.026 for g in gaps), gaps


def test_saturation_grows_with_weight_and_a_leak_exponentially() -> None:
    rec, truth = generate_field("saturation", 4)
    lead = 60.0 if rec.rollout.steps else 0.0
    s, c = runs(rec, "stable"), runs(rec, "canary")

    def ratio(lo: float, hi: float) -> float:
        def med(rs: list[TransactionResult]) -> float:
            return float(np.median([r.latency_ms for r in rs if r.ok and lo <= r.t < hi]))

        return med(c) / med(s)

    assert schedule_weight(np.array([lead + 30.0]), lead)[0] == 5.0
    assert ratio(lead + 60, lead + 120) < 1.1  # fine at 5-10%
    assert truth.breach_t is not None and ratio(truth.breach_t, truth.breach_t + 60) > 1.4
    rec, truth = generate_field("leak", 4)
    s, c = runs(rec, "stable"), runs(rec, "canary")
    assert truth.onset_t is not None and truth.breach_t is not None
    early, mid, late = (ratio(x, x + 60) for x in (60, truth.onset_t, truth.breach_t))
    # The excess over stable at least doubles between the onset and the breach.
    assert early < 1.1 and (late - 1) > 2 * (mid - 1) > 0


def test_some_draws_have_a_weight_zero_isolated_phase() -> None:
    firsts = {draw("identical", s).rollout.first_weight() for s in range(6)} | {
        draw("warm-up", s).rollout.first_weight() for s in range(3)
    }
    assert firsts == {0, 5}
    # An isolated phase is initial_weight 0 (the format's steps must be at least 1): such a
    # draw still reads back as replay JSON.
    rec = next(
        draw("identical", s) for s in range(6) if draw("identical", s).rollout.first_weight() == 0
    )
    assert parse_recording(json.dumps(rec.to_dict()), "x").rollout.initial_weight == 0


def test_cli_field_noise_runs_and_explains(capsys: Any) -> None:
    code = main(
        [
            "--noise",
            "field",
            "--kinds",
            "very-low-volume",
            "--seeds",
            "1",
            "--judges",
            "threshold",
            "--jobs",
            "1",
            "--explain",
            "--json",
        ]
    )
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["noise"] == "field" and doc["n_good"] == 1


@pytest.mark.parametrize("kind", ["nope"])
def test_unknown_kind_lists_the_known(kind: str) -> None:
    with pytest.raises(ValueError, match="known: identical"):
        generate_field(kind, 0)
