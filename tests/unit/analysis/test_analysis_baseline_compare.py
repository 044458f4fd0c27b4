"""Baseline bands and stable health; canary-versus-stable comparisons."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from canary.analysis.baseline import Baseline
from canary.analysis.compare import (
    compare_error_rate,
    compare_latency_p95,
    compare_latency_shift,
)


def test_band_from_history(synth: SimpleNamespace) -> None:
    history = synth.history
    rng = np.random.default_rng(10)
    base = Baseline.from_history(history(rng, ["a"], buckets=30, error_rate=0.0), 60.0)
    mean, std, nb = base.band("a", "success_rate")
    assert mean == pytest.approx(100.0) and std == pytest.approx(0.0, abs=1e-9) and nb == 30
    mean, std, nb = base.band("a", "p95_ms")
    assert 120 < mean < 200 and std > 0 and nb == 30
    assert base.band("unknown", "p95_ms")[2] == 0
    with pytest.raises(ValueError, match="known"):
        base.band("a", "p99")


def test_stable_health_check(synth: SimpleNamespace) -> None:
    runs, history = synth.runs, synth.history
    rng = np.random.default_rng(11)
    base = Baseline.from_history(history(rng, ["a"]), 60.0)
    healthy = runs(rng, "stable", "a", 40)
    assert all(c.verdict == "pass" for c in base.check_stable("a", healthy, alpha=0.01))
    sick = runs(rng, "stable", "a", 40, error_rate=0.3)
    slow = runs(rng, "stable", "a", 40, median_ms=300)
    assert base.check_stable("a", sick, alpha=0.01)[0].verdict == "fail"
    assert base.check_stable("a", slow, alpha=0.01)[1].verdict == "fail"
    assert "stable itself" in base.check_stable("a", sick, alpha=0.01)[0].reason


def test_one_failure_after_a_spotless_history_is_not_an_incident(synth: SimpleNamespace) -> None:
    runs, history = synth.runs, synth.history
    rng = np.random.default_rng(12)
    base = Baseline.from_history(history(rng, ["a"], error_rate=0.0), 60.0)
    window = runs(rng, "stable", "a", 40, error_rate=0.0)
    window[0].ok = False
    assert base.check_stable("a", window, alpha=0.01)[0].verdict == "pass"


def test_error_rate_comparison_verdicts_and_reason(synth: SimpleNamespace) -> None:
    runs = synth.runs
    rng = np.random.default_rng(13)
    stable = runs(rng, "stable", "checkout", 50, error_rate=0.0)
    canary = runs(rng, "canary", "checkout", 50, error_rate=0.0)
    for r in canary[:9]:
        r.ok = False
    check = compare_error_rate("checkout", canary, stable, 0.5, alpha=0.01, suspect_alpha=0.2)
    assert check.verdict == "fail"
    assert check.reason.startswith(
        "checkout: canary success 82.0% (41/50) vs stable 100.0% (50/50); +18.0 pp errors "
        "exceeds tolerance 0.5 pp (p="
    )
    same = compare_error_rate("checkout", stable, stable, 0.5, alpha=0.01, suspect_alpha=0.2)
    assert same.verdict == "pass"


def test_latency_comparisons(synth: SimpleNamespace) -> None:
    runs = synth.runs
    rng = np.random.default_rng(14)
    stable = runs(rng, "stable", "a", 60)
    slow = runs(rng, "canary", "a", 60, median_ms=200)
    a = dict(alpha=0.01, suspect_alpha=0.2)
    assert compare_latency_p95("a", slow, stable, 10, **a).verdict == "fail"
    assert compare_latency_shift("a", slow, stable, 10, **a).verdict == "fail"
    same = runs(rng, "canary", "a", 60)
    assert compare_latency_p95("a", same, stable, 10, **a).verdict != "fail"
    assert compare_latency_shift("a", same, stable, 10, **a).verdict != "fail"
    # The tolerance is the null: 2x slower is within a 150% tolerance.
    assert compare_latency_shift("a", slow, stable, 150, **a).verdict == "pass"


def test_p95_is_not_compared_on_tiny_windows(synth: SimpleNamespace) -> None:
    rng = np.random.default_rng(15)
    c = synth.runs(rng, "canary", "a", 12, median_ms=150)
    s = synth.runs(rng, "stable", "a", 12)
    check = compare_latency_p95("a", c, s, 10, alpha=0.01, suspect_alpha=0.2)
    assert check.verdict == "pass" and check.numbers["skipped"] is True
    assert "p95 not compared with 12 canary and 12 stable runs" in check.reason
