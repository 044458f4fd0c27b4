"""The engine's decision flow: shared breaches, holds for evidence and their estimates."""

from __future__ import annotations

import numpy as np

from canary.analysis.engine import AnalysisEngine, EngineSettings
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


def test_an_objective_breach_stable_rules_out_at_the_same_time_rolls_back() -> None:
    eng = engine()
    eng.observe(_incident(stream(1, 630), 600, 630, keep_stable=60))
    d = eng.decide(630.0, 40, step_end=True)
    assert d.action == "rollback", d.reasons
    assert "below the 99% objective" in d.reasons[0]


def test_a_canary_breaching_the_objective_from_its_start_rolls_back_whatever_stable_has() -> None:
    eng = engine()
    eng.observe(_incident(stream(1, 30), 0, 30, keep_stable=3))
    d = eng.decide(30.0, 5, step_end=False)
    assert d.action == "rollback", d.reasons
    assert "below the 99% objective" in d.reasons[0]
