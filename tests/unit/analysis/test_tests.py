"""The tests' wander variance: measured on stable and on the paired (canary minus stable) batches."""

from __future__ import annotations

import math
from bisect import bisect_right

import numpy as np
import pytest

from canary.analysis.engine import AnalysisEngine, EngineSettings
from canary.analysis.ledger import Batches
from canary.analysis.slo import SLO
from canary.analysis.tests import ALL, Wander, wander_variance
from canary.probing.result import TransactionResult

TXNS = ("browse", "checkout")


def _path(rng: np.random.Generator, n: int, sd: float, tau: float) -> np.ndarray:
    """An Ornstein-Uhlenbeck path, one value a second, of sd ``sd`` and correlation time ``tau``."""
    phi = math.exp(-1.0 / tau)
    x = np.empty(n)
    x[0] = sd * rng.standard_normal()
    for i in range(1, n):
        x[i] = phi * x[i - 1] + sd * math.sqrt(1 - phi * phi) * rng.standard_normal()
    return x


def wandering(
    seed: int,
    start: float,
    seconds: float,
    *,
    shared_sd: float,
    own_sd: float,
    canary_mult: float = 1.0,
    versions: tuple[str, ...] = ("stable", "canary"),
    rate: float = 2.0,
) -> list[TransactionResult]:
    """Both versions probed at ``rate`` per second and transaction, each run's log latency
    normal (sd 0.35) around the transaction's median, moved by a wander both versions share
    (an infrastructure's) and by each version's own, all over ~3 minutes."""
    rng = np.random.default_rng(seed)
    n = int(seconds) + 2
    shared = _path(rng, n, shared_sd, 180.0)
    own = {v: _path(rng, n, own_sd, 180.0) for v in ("stable", "canary")}
    out = []
    for txn, med in zip(TXNS, (80.0, 250.0), strict=True):
        for v in versions:
            k = int(seconds * rate)
            t = (np.arange(k) + rng.random(k)) / rate
            idx = t.astype(int)
            mult = canary_mult if v == "canary" else 1.0
            lat = med * mult * np.exp(0.35 * rng.standard_normal(k) + shared[idx] + own[v][idx])
            out += [
                TransactionResult(float(start + a), v, txn, True, float(b))
                for a, b in zip(t, lat, strict=True)
            ]
    out.sort(key=lambda r: r.t)
    return out


def engine(seed: int, **settings: object) -> AnalysisEngine:
    # An hour of stable's history with the same (7%) shared wander: stable's own spread between
    # batches is mostly the infrastructure's, which both versions share.
    hist = wandering(seed + 1000, -3600.0, 3600, shared_sd=0.07, own_sd=0.01, versions=("stable",))
    return AnalysisEngine(
        SLO(error_budget=1000),
        EngineSettings.from_dict({"warmup_s": 0.0, "forecast": False, **settings}),
        list(TXNS),
        hist,
    )


def first_rollback(eng: AnalysisEngine, results: list[TransactionResult], end: int) -> float | None:
    """Interim checks every 5 s and a step end every 60 s (the weight does not matter here)."""
    times = [r.t for r in results]
    for t in range(5, end + 1, 5):
        eng.observe(results[bisect_right(times, t - 5) : bisect_right(times, t)])
        d = eng.decide(float(t), 10, step_end=t % 60 == 0, holds=0)
        if d.action == "rollback":
            return float(t)
    return None


def test_a_step_under_wander_both_versions_share_is_caught_by_the_paired_spread() -> None:
    # 1.3x slower, under a 7% wander of the infrastructure (both versions) and 1% of each
    # version's own. Stable's spread between batches counts the shared wander, which cancels in
    # the difference: measured on stable alone, the variance sat near its cap and this canary
    # was never rolled back in 15 minutes.
    results = wandering(7, 0.0, 900, shared_sd=0.07, own_sd=0.01, canary_mult=1.3)
    assert first_rollback(engine(7, paired_wander=False), results, 900) is None
    t = first_rollback(engine(7), results, 900)
    assert t is not None and t <= 720, t


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_wander_both_versions_share_and_their_own_never_roll_back(seed: int) -> None:
    # Healthy: 5% shared wander and 4% of each version's own, for 30 minutes. The paired
    # spread sees the own wander (which does not cancel) and keeps the variance wide enough.
    results = wandering(seed, 0.0, 1800, shared_sd=0.05, own_sd=0.04)
    assert first_rollback(engine(seed), results, 1800) is None


def test_the_paired_estimate_never_widens_the_variance_beyond_stables() -> None:
    # A canary drifting away widens the spread of the paired batches; the variance stays at
    # most the stable-based one, so the drift cannot hide behind its own spread.
    results = wandering(5, 0.0, 900, shared_sd=0.02, own_sd=0.01)
    drifted = [
        TransactionResult(r.t, r.version, r.transaction, r.ok, r.latency_ms * math.exp(r.t / 1500))
        if r.version == "canary"
        else r
        for r in results
    ]
    with_pairs, without = engine(5), engine(5, paired_wander=False)
    for eng in (with_pairs, without):
        eng.observe(drifted)
        eng.decide(900.0, 10, step_end=False)
    for scope in (ALL, "browse"):
        a = Wander().get(with_pairs.ledger, scope, "latency")
        b = Wander().get(without.ledger, scope, "latency")
        assert a <= b + 1e-12


def test_wander_variance_is_shrunk_toward_its_prior_while_batches_are_few() -> None:
    idx = np.arange(6, dtype=float)
    flat = Batches(idx, np.zeros(6), np.full(6, 1e-4))
    # No spread beyond sampling in 6 batches: the prior keeps 4 / (4 + 6) of its weight.
    assert wander_variance(flat, 0.05, 0.1, 4.0) == pytest.approx(0.4 * 0.05**2)
    assert wander_variance(Batches(idx[:3], np.zeros(3), np.full(3, 1e-4)), 0.05, 0.1) == (
        pytest.approx(0.05**2)
    )


def test_older_batch_rows_without_the_canarys_columns_still_load() -> None:
    eng = engine(3)
    eng.observe(wandering(3, 0.0, 400, shared_sd=0.02, own_sd=0.01))
    eng.decide(400.0, 10, step_end=False)
    state = eng.to_state()
    assert all(len(r) == 9 for rows in state["batch_log"].values() for r in rows)
    # An older engine logged stable's columns only.
    state["batch_log"] = {k: [r[:5] for r in rows] for k, rows in state["batch_log"].items()}
    old = AnalysisEngine.from_state(state)
    assert old.ledger.paired_batches("browse", "latency").diffs.size == 0
    assert old.ledger.batches("browse", "latency").diffs.size > 0
    assert old.decide(405.0, 10, step_end=False).action == "hold"
