"""The alt noise generator: other noise than the default's, same classes and truth, per seed."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from canary.bench.alt import TIMEOUT_MS, _clustered, generate_alt
from canary.bench.run import main
from canary.bench.scenarios import BAD, HEALTHY, KINDS, P95_FACTOR, TXNS, generate


def _latencies(rec: Any, version: str, txn: str) -> np.ndarray:
    return np.array(
        [r.latency_ms for r in rec.observations if r.version == version and r.transaction == txn]
    )


def test_same_seed_same_recording_and_not_the_default_generators() -> None:
    a, ta = generate_alt("latency-drift", 3)
    b, tb = generate_alt("latency-drift", 3)
    assert ta == tb
    assert [(r.t, r.latency_ms, r.ok) for r in a.observations[:200]] == [
        (r.t, r.latency_ms, r.ok) for r in b.observations[:200]
    ]
    d, _ = generate("latency-drift", 3)
    assert [r.latency_ms for r in a.observations[:50]] != [
        r.latency_ms for r in d.observations[:50]
    ]
    assert a.description.startswith("synthetic alt: bad")


def test_every_class_keeps_its_truth() -> None:
    for kind in KINDS:
        rec, truth = generate_alt(kind, 0)
        assert truth.kind == kind and truth.bad == (kind in BAD)
        assert set(rec.transactions) == {r.transaction for r in rec.observations}
    for kind in ("latency-drift", "error-drift", "saturation", "leak"):
        _, truth = generate_alt(kind, 1)
        assert truth.onset_t is not None and truth.breach_t is not None
        assert truth.breach_t > truth.onset_t and truth.drift is not None
    assert not set(HEALTHY) & set(BAD)


def test_latency_is_autocorrelated_between_consecutive_runs() -> None:
    rec, _ = generate_alt("identical", 0)
    x = np.log(_latencies(rec, "stable", "checkout"))
    lag1 = float(np.corrcoef(x[:-1], x[1:])[0, 1])
    # Independent draws would give about 0 (sd 0.02 at this n).
    assert lag1 > 0.1
    # The default generator's runs are independent given the time.
    d, _ = generate("identical", 0)
    y = np.log(_latencies(d, "stable", "checkout"))
    assert abs(float(np.corrcoef(y[:-1], y[1:])[0, 1])) < 0.06


def test_heavy_tail_and_timeouts_but_the_p95_of_the_default() -> None:
    lat = np.concatenate(
        [_latencies(generate_alt("identical", s)[0], "stable", "checkout") for s in range(4)]
    )
    p50, p95, p999 = np.percentile(lat, [50, 95, 99.9])
    # A lognormal of the default's spread puts p99.9 at 2.8x the median; here it is far out.
    assert p999 > 4.0 * p50
    # The body is placed so that the p95 (the objectives' anchor) is the default's.
    assert p95 == pytest.approx(TXNS["checkout"][0] * P95_FACTOR, rel=0.15)
    rec, _ = generate_alt("error-drift", 0)
    assert any(r.latency_ms == TIMEOUT_MS and not r.ok for r in rec.observations)


def test_failures_come_in_runs_at_the_rate_asked() -> None:
    rng = np.random.default_rng(0)
    f = _clustered(rng, np.full(100_000, 0.02), 2.0)
    assert f.mean() == pytest.approx(0.02, rel=0.1)
    # Bernoulli failures follow a failure 2% of the time; clustered ones about half the time.
    after = f[1:][f[:-1]]
    assert after.mean() > 0.3


def test_arrivals_are_bursty_and_some_draws_have_an_isolated_phase() -> None:
    rec, _ = generate_alt("identical", 0)
    t = np.array(
        [r.t for r in rec.observations if r.version == "canary" and r.transaction == "browse"]
    )
    gaps = np.diff(t)
    # Batches: most runs start within a fraction of a second of the one before, some gaps
    # last several seconds (regular 2/s arrivals would give 0.5 s every time).
    assert np.median(gaps) < 0.3 and gaps.max() > 3.0
    steps = [generate_alt("identical", s)[0].rollout.steps for s in range(8)]
    assert any(s and s[0] == 0 for s in steps) and any(s is None for s in steps)


def test_warm_up_in_the_isolated_phase_decays() -> None:
    for seed in range(10):
        rec, truth = generate_alt("warm-up", seed)
        if rec.rollout.steps and rec.rollout.steps[0] == 0:
            break
    else:
        raise AssertionError("no warm-up draw with a weight-0 phase in 10 seeds")
    assert not truth.bad
    early = [r.latency_ms for r in rec.observations if r.version == "canary" and r.t < 5]
    late = [r.latency_ms for r in rec.observations if r.version == "canary" and 300 < r.t < 400]
    assert np.median(early) > 1.3 * np.median(late)


def test_history_is_stable_only_and_before_zero() -> None:
    rec, _ = generate_alt("infra-step", 2)
    assert rec.history and all(r.t < 0 and r.version == "stable" for r in rec.history)
    ts = [r.t for r in rec.observations]
    assert ts == sorted(ts) and ts[0] >= 0 and ts[-1] < 1500


def test_cli_alt_quick_parses_and_explains(capsys: Any) -> None:
    args = ["--noise", "alt", "--quick", "--seeds", "1", "--kinds", "error-step", "--jobs", "1"]
    assert main([*args, "--explain", "--judges", "engine,kayenta"]) == 0
    out = capsys.readouterr().out
    assert "alt noise" in out and "ratio to kayenta-style, synthetic only" in out
    assert "wrong verdicts of engine" in out
    assert _exits(["--noise", "nope"])


def _exits(argv: list[str]) -> bool:
    """argparse rejects an unknown choice by exiting with status 2."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    return e.value.code == 2
