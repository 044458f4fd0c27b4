"""Synthetic recordings: deterministic per seed, truthful about what they contain."""

from __future__ import annotations

import pytest

from canary.bench.scenarios import BAD, HEALTHY, KINDS, generate


def test_same_seed_same_recording() -> None:
    a, ta = generate("latency-drift", 3)
    b, tb = generate("latency-drift", 3)
    assert ta == tb
    assert [r.latency_ms for r in a.observations[:50]] == [
        r.latency_ms for r in b.observations[:50]
    ]


def test_truth_matches_the_kind() -> None:
    for kind in HEALTHY:
        assert not generate(kind, 0)[1].bad
    for kind in BAD:
        assert generate(kind, 0)[1].bad


def test_tight_slo_is_healthy_under_a_near_objective() -> None:
    rec, truth = generate("tight-slo", 1)
    assert not truth.bad
    assert rec.slo.latency_p95_ms is not None and rec.slo.latency_p95_ms < 600


def test_within_tolerance_is_healthy_but_worse_than_stable() -> None:
    rec, truth = generate("within-tolerance", 2)
    assert not truth.bad
    med = {
        v: sorted(r.latency_ms for r in rec.observations if r.version == v)
        for v in ("stable", "canary")
    }
    ratio = med["canary"][len(med["canary"]) // 2] / med["stable"][len(med["stable"]) // 2]
    assert 1.03 < ratio < 1.1


def test_recordings_follow_the_replay_rules() -> None:
    rec, _ = generate("identical", 0)
    assert all(r.t < 0 and r.version == "stable" for r in rec.history)
    ts = [r.t for r in rec.observations]
    assert ts == sorted(ts) and ts[0] >= 0
    assert {r.version for r in rec.observations} == {"stable", "canary"}


def test_unknown_kind_lists_the_known() -> None:
    with pytest.raises(ValueError, match="known: " + KINDS[0]):
        generate("nope", 0)


def test_new_classes_are_what_they_say() -> None:
    import numpy as np

    rec, truth = generate("many-txns", 0)
    assert 10 <= len(rec.transactions) <= 30 and not truth.bad
    rec, truth = generate("one-bad-of-12", 0)
    assert len(rec.transactions) == 12 and truth.bad
    rec, truth = generate("warm-up", 0)
    early = [r.latency_ms for r in rec.observations if r.version == "canary" and r.t < 5]
    late = [r.latency_ms for r in rec.observations if r.version == "canary" and 300 < r.t < 400]
    assert np.median(early) > 1.4 * np.median(late)
    rec, truth = generate("saturation", 0)
    # Fine at 5%: it breaches only once the schedule reaches 40-70% (420 s or later).
    assert truth.bad and truth.breach_t is not None and truth.breach_t >= 420
    rec, truth = generate("wander", 0)
    assert not truth.bad
