"""The engine's decision flow: shared breaches, holds for evidence and their estimates."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from canary.analysis.engine import AnalysisEngine, EngineSettings
from canary.analysis.holds import runs_to_catch
from canary.analysis.slo import SLO
from canary.probing.result import TransactionResult

from .test_engine import TXNS, history, stream


def engine(**settings: object) -> AnalysisEngine:
    settings.setdefault("warmup_s", 0.0)
    return AnalysisEngine(
        SLO(error_budget=500), EngineSettings.from_dict(dict(settings)), TXNS, history()
    )


def _incident(
    results: list[TransactionResult], lo: float, hi: float, keep_stable: int, seed: int = 5
) -> list[TransactionResult]:
    """An incident under both versions in [lo, hi): a third of the canary's runs fail, and
    stable, probed at other instants, has only ``keep_stable`` runs there per transaction,
    which happen to succeed."""
    rng = np.random.default_rng(seed)
    out, kept = [], dict.fromkeys(TXNS, 0)
    for r in results:
        if not lo <= r.t < hi:
            out.append(r)
        elif r.version == "canary":
            ok = bool(rng.random() >= 1 / 3)
            out.append(TransactionResult(r.t, r.version, r.transaction, ok, r.latency_ms))
        elif kept[r.transaction] < keep_stable:
            kept[r.transaction] += 1
            out.append(TransactionResult(r.t, r.version, r.transaction, True, r.latency_ms))
    return out


def test_an_objective_breach_stable_cannot_rule_out_holds_and_alerts() -> None:
    eng = engine()
    eng.observe(_incident(stream(1, 630), 600, 630, keep_stable=3))
    d = eng.decide(630.0, 40, step_end=True)
    assert d.action == "hold", d.reasons
    first = d.reasons[0]
    assert "below the 99% objective" in first and "since t=600s" in first
    assert "do not rule out that it shares it" in first and "holding the weight" in first
    assert any("below the 99% objective" in a for a in d.alerts)


@pytest.mark.parametrize(
    ("end", "onset", "keep_stable"),
    [
        (630, 600, 60),  # stable's runs at the same time rule out that it shares the breach
        (30, 0, 3),  # a canary breaching since its start, whatever stable has
    ],
)
def test_an_objective_breach_that_is_the_canarys_rolls_back(
    end: int, onset: int, keep_stable: int
) -> None:
    eng = engine()
    eng.observe(_incident(stream(1, end), onset, end, keep_stable=keep_stable))
    d = eng.decide(float(end), 40, step_end=False)
    assert d.action == "rollback", d.reasons
    assert "below the 99% objective" in d.reasons[0]


def _thin(
    results: list[TransactionResult], lo: float, txn: str, version: str, keep: int
) -> list[TransactionResult]:
    """Only the first ``keep`` runs of ``txn``'s ``version`` from ``lo`` on (a bursty probe)."""
    out, kept = [], 0
    for r in results:
        if r.t >= lo and r.transaction == txn and r.version == version:
            kept += 1
            if kept > keep:
                continue
        out.append(r)
    return out


def _low_volume_step(txn: str, version: str, keep: int, canary_mult: float = 1.0) -> AnalysisEngine:
    eng = engine()
    eng.observe(stream(1, 60, rate=1.0))
    assert eng.decide(60.0, 5, step_end=True).action == "increase"
    step = stream(2, 60, t0=60, rate=0.3, canary_mult=canary_mult)
    eng.observe(_thin(step, 60, txn, version, keep))
    return eng


def test_a_step_short_on_one_transaction_ends_when_the_step_as_a_whole_has_runs_enough() -> None:
    # browse: 6 canary and 18 stable runs (harmonic mean 9 < 10); checkout has 18 of each.
    d = _low_volume_step("browse", "canary", 6).decide(120.0, 10, step_end=True)
    assert d.action == "increase", d.reasons


def test_a_canary_beside_a_thin_stable_is_judged_against_stable_history() -> None:
    d = _low_volume_step("browse", "stable", 1).decide(120.0, 10, step_end=True)
    assert d.action == "increase", d.reasons
    # The same step with a canary 40% slower is not let through on history: it holds.
    d = _low_volume_step("browse", "stable", 1, canary_mult=1.4).decide(120.0, 10, step_end=True)
    assert d.action != "increase", d.reasons


def _slow_browse(results: list[TransactionResult], mult: float) -> list[TransactionResult]:
    return [
        TransactionResult(
            r.t,
            r.version,
            r.transaction,
            r.ok,
            r.latency_ms * (mult if r.version == "canary" and r.transaction == "browse" else 1.0),
        )
        for r in results
    ]


def test_the_sample_size_estimate_is_about_the_runs_the_engine_needs() -> None:
    """The hold's estimate for a canary twice the tolerance slower, against the runs per
    version at which the engine, checking every 15 s, rolled such a canary back."""
    hist = [r for r in stream(99, 3600, t0=-3600, rate=0.5) if r.version == "stable"]
    rate, estimates, needed = 0.5, [], []
    for seed in range(5):
        eng = AnalysisEngine(SLO(error_budget=500), EngineSettings(warmup_s=0.0), TXNS, hist)
        data = _slow_browse(stream(seed, 1800, rate=rate), 1.21)
        found = math.inf
        for t in range(15, 1800, 15):
            eng.observe([r for r in data if t - 15 <= r.t < t])
            if t == 60:
                estimates.append(runs_to_catch(eng.ledger, eng._wander, "browse"))
            if eng.decide(float(t), 5, step_end=False).action == "rollback":
                found = t * rate
                break
        needed.append(found)
    est, got = float(np.median(estimates)), float(np.median(needed))
    assert math.isfinite(est) and est / 3.0 <= got <= 1.5 * est, (estimates, needed)


def test_low_volume_hold_reasons_give_the_wait_and_the_sample_size_at_the_rollout_rate() -> None:
    d = _low_volume_step("browse", "canary", 3).decide(120.0, 10, step_end=True)
    assert d.action == "hold", d.reasons
    first = d.reasons[0]
    assert first.startswith("browse: too little evidence: 3 canary and 18 stable runs")
    assert "stable runs/s that is about" in first and "s more (rates over the rollout)" in first
    assert "21% slower (twice the tolerance)" in first


def _suspect_then_fading(seed: int = 2) -> list[TransactionResult]:
    """browse 30% slower for two minutes, then as fast as stable: its latency test holds as
    not yet conclusive, and the evidence fades in the following 30 s steps."""
    data = stream(seed, 400)
    return _slow_browse([r for r in data if r.t < 120], 1.3) + [r for r in data if r.t >= 120]


def _steps(eng: AnalysisEngine, data: list[TransactionResult], ends: list[int]) -> list[str]:
    out = []
    for t in ends:
        eng.observe([r for r in data if t - 30 <= r.t < t])
        out.append(eng.decide(float(t), 5, step_end=True).action)
    return out


def test_a_latency_suspicion_holds_until_its_evidence_falls_back() -> None:
    data = _suspect_then_fading()
    # Before: the test dipped below the suspect bar at 150 s and the weight grew at once.
    old = engine(latency_suspect_fraction=0.5, suspect_release_fraction=0.5)
    before = _steps(old, data, [30, 60, 90, 120, 150])
    assert before == ["increase", "increase", "hold", "hold", "increase"]
    eng = engine()
    assert _steps(eng, data, [30, 60, 90, 120]) == ["increase", "increase", "hold", "hold"]
    # Its memory survives the engine's state (kept between Celery tasks) ...
    eng = AnalysisEngine.from_state(json.loads(json.dumps(eng.to_state())))
    eng.observe([r for r in data if 120 <= r.t < 150])
    d = eng.decide(150.0, 5, step_end=True)
    assert d.action == "hold"
    assert "held as possibly slower since t=90s and not cleared" in d.reasons[0], d.reasons
    # ... and it lets go once the evidence is below its release bar.
    assert _steps(eng, data, [180]) == ["increase"]
    assert eng.suspects == {}


def test_an_older_state_without_suspects_loads() -> None:
    eng = engine()
    eng.observe(stream(0, 60))
    state = eng.to_state()
    del state["suspects"]
    assert AnalysisEngine.from_state(state).suspects == {}


def test_the_latency_tests_have_their_own_suspect_bar() -> None:
    # browse's latency test is at about 0.37 of its bar at 60 s.
    data = _suspect_then_fading()
    assert _steps(engine(latency_suspect_fraction=0.5), data, [30, 60]) == ["increase"] * 2
    assert _steps(engine(latency_suspect_fraction=0.3), data, [30, 60]) == ["increase", "hold"]
