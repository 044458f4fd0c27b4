"""The analysis engine: decisions, holds, stable health, error budget and the JSON state."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from canary.analysis.decision import JudgeInput
from canary.analysis.engine import AnalysisEngine, EngineSettings
from canary.analysis.judge import get_judge
from canary.analysis.slo import SLO
from canary.analysis.warmup import allowance
from canary.errors import ConfigError
from canary.probing.result import StepResult, TransactionResult

TXNS = ["browse", "checkout"]


def stream(
    seed: int,
    seconds: float,
    *,
    t0: float = 0.0,
    rate: float = 2.0,
    canary_err: float = 0.003,
    stable_err: float = 0.003,
    canary_mult: float = 1.0,
    stable_mult: float = 1.0,
) -> list[TransactionResult]:
    rng = np.random.default_rng(seed)
    out = []
    n = int(seconds * rate)
    for txn, med in zip(TXNS, (80.0, 250.0), strict=True):
        for version, err, mult in (
            ("stable", stable_err, stable_mult),
            ("canary", canary_err, canary_mult),
        ):
            t = t0 + (np.arange(n) + rng.random(n)) / rate
            ok = rng.random(n) >= err
            lat = med * mult * np.exp(0.35 * rng.standard_normal(n))
            out += [
                TransactionResult(float(a), version, txn, bool(b), float(c))
                for a, b, c in zip(t, ok, lat, strict=True)
            ]
    out.sort(key=lambda r: r.t)
    return out


def history(seed: int = 99) -> list[TransactionResult]:
    return [r for r in stream(seed, 600, t0=-600, rate=0.5) if r.version == "stable"]


def engine(**settings: object) -> AnalysisEngine:
    # These tests feed steady versions from t = 0: no warm-up to wait out unless asked for.
    settings.setdefault("warmup_s", 0.0)
    return AnalysisEngine(
        SLO(latency_p95_ms=800.0, error_budget=50),
        EngineSettings.from_dict(dict(settings)),
        TXNS,
        history(),
    )


def test_identical_versions_increase_then_promote() -> None:
    eng = engine()
    eng.observe(stream(1, 60))
    d = eng.decide(60.0, 5, step_end=True)
    assert d.action == "increase", d.reasons
    assert d.reasons[0].startswith("all checks within tolerance at weight 5%")
    eng.observe(stream(2, 60, t0=60))
    assert eng.decide(120.0, 95, step_end=True, final=True).action == "promote"


def test_interim_checks_only_roll_back() -> None:
    eng = engine()
    eng.observe(stream(1, 20))
    d = eng.decide(20.0, 5, step_end=False)
    assert d.action == "hold" and d.metrics["interim"] is True


def test_a_big_latency_regression_rolls_back_within_the_first_step() -> None:
    eng = engine()
    results = stream(3, 60, canary_mult=1.6)
    rolled = None
    for t in range(5, 61, 5):
        eng.observe([r for r in results if t - 5 < r.t <= t])
        d = eng.decide(float(t), 5, step_end=t == 60)
        if d.action == "rollback":
            rolled = (t, d)
            break
    assert rolled is not None and rolled[0] < 60
    assert "latency" in rolled[1].reasons[0]
    assert "slower than the 10% tolerance allows" in rolled[1].reasons[0]
    assert not rolled[1].predictive


def test_an_error_regression_rolls_back_with_numbers() -> None:
    eng = engine()
    eng.observe(stream(4, 180, canary_err=0.08))
    d = eng.decide(180.0, 15, step_end=True)
    assert d.action == "rollback"
    assert any("pp" in r or "objective" in r for r in d.reasons)


def test_too_little_evidence_holds_then_fails_safe() -> None:
    eng = engine()
    eng.observe(stream(5, 60, rate=0.05))  # three runs per version and transaction
    d = eng.decide(60.0, 5, step_end=True, holds=0)
    assert d.action == "hold"
    assert "too little evidence" in d.reasons[0]
    # Too few runs alone is low volume, not a reason to fail safe: the step grows, up to
    # max_evidence_holds.
    assert eng.decide(60.0, 5, step_end=True, holds=3).action == "hold"
    d = eng.decide(60.0, 5, step_end=True, holds=20)
    assert d.action == "rollback" and "fail safe" in d.reasons[0]
    d = engine(on_max_holds="increase")
    d.observe(stream(5, 60, rate=0.05))
    out = d.decide(60.0, 5, step_end=True, holds=20)
    assert out.action == "increase" and out.alerts


def test_stable_degraded_holds_and_does_not_blame_the_canary() -> None:
    eng = engine()
    eng.observe(stream(6, 60, canary_err=0.2, stable_err=0.2))
    d = eng.decide(60.0, 5, step_end=True)
    assert d.action == "hold"
    assert any("stable itself is degraded" in r for r in d.reasons)
    assert d.alerts


def test_error_budget_alerts_and_rolls_back_only_when_configured() -> None:
    slo = SLO(error_budget=2, success_threshold=90.0, max_error_rate_increase_pp=20.0)
    results = stream(7, 60, canary_err=0.03, stable_err=0.03)
    eng = AnalysisEngine(slo, EngineSettings(), TXNS, history())
    eng.observe(results)
    d = eng.decide(60.0, 5, step_end=True)
    assert d.action != "rollback" and any("error budget spent" in a for a in d.alerts)
    slo2 = SLO(
        error_budget=2,
        success_threshold=90.0,
        max_error_rate_increase_pp=20.0,
        rollback_on_error_budget=True,
    )
    eng = AnalysisEngine(slo2, EngineSettings(), TXNS, history())
    eng.observe(results)
    d = eng.decide(60.0, 5, step_end=True)
    assert d.action == "rollback" and "rollback_on_error_budget" in d.reasons[0]


def test_state_round_trips_through_json_and_decides_the_same() -> None:
    results = stream(8, 300, canary_mult=1.08, canary_err=0.006)
    whole = engine()
    resumed = engine()
    decisions_a, decisions_b = [], []
    for t in range(10, 301, 10):
        chunk = [r for r in results if t - 10 < r.t <= t]
        whole.observe(chunk)
        decisions_a.append(whole.decide(float(t), 5, step_end=t % 60 == 0).to_dict())
        # The live coordinator rebuilds the engine from Redis before every task.
        state = json.loads(json.dumps(resumed.to_state()))
        resumed = AnalysisEngine.from_state(state)
        resumed.observe(chunk)
        decisions_b.append(resumed.decide(float(t), 5, step_end=t % 60 == 0).to_dict())
    assert decisions_a == decisions_b
    state = whole.to_state()
    assert json.loads(json.dumps(state)) == state  # plain JSON, no NaN or tuples


def _run_steps(eng: AnalysisEngine, results: list[TransactionResult], steps: int) -> list[str]:
    """Interim checks every 5 s and a step end every 60 s, holds counted as a rollout does."""
    actions: list[str] = []
    holds, weight = 0, 5
    for t in range(5, 60 * steps + 1, 5):
        eng.observe([r for r in results if t - 5 < r.t <= t])
        end = t % 60 == 0
        d = eng.decide(float(t), weight, step_end=end, holds=holds)
        if d.action == "rollback":
            return [*actions, "rollback: " + d.reasons[0]]
        if end:
            actions.append(d.action)
            holds = holds + 1 if d.action == "hold" else 0
            weight = min(100, weight + 5) if d.action == "increase" else weight
    return actions


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_a_steady_canary_within_tolerance_is_not_rolled_back(seed: int) -> None:
    # 7% slower and 0.3 pp more errors: worse than stable, within the 10% and 0.5 pp
    # tolerances. Its estimates cross 10% by chance in short windows; that is no reason to
    # hold it until max_holds rolls it back.
    results = stream(seed, 900, canary_mult=1.07, canary_err=0.006)
    actions = _run_steps(engine(), results, 15)
    assert not any(a.startswith("rollback") for a in actions), actions
    assert actions.count("increase") >= 12, actions


def test_pooled_tests_get_the_larger_share_of_alpha() -> None:
    eng = engine()
    eng.observe(stream(1, 60))
    tests = eng.decide(60.0, 5, step_end=True).metrics["tests"]
    pooled = {t["log_threshold"] for t in tests if t["transaction"] == "all transactions"}
    single = {t["log_threshold"] for t in tests if t["transaction"] != "all transactions"}
    # 3 pooled tests share 70% of alpha = 0.02; 2 transactions x 5 tests share the rest.
    assert pooled == {round(math.log(3 / (0.7 * 0.02)), 4)}
    assert single == {round(math.log(10 / (0.3 * 0.02)), 4)}
    even = engine(pooled_alpha_share=0.0)
    even.observe(stream(1, 60))
    tests = even.decide(60.0, 5, step_end=True).metrics["tests"]
    assert {t["log_threshold"] for t in tests} == {round(math.log(13 / 0.02), 4)}
    # With a warm-up, its test takes warmup_alpha_share (20%) of alpha first.
    warm = engine(warmup_s=45.0)
    warm.observe(stream(1, 60))
    tests = warm.decide(60.0, 5, step_end=True).metrics["tests"]
    pooled = {t["log_threshold"] for t in tests if t["transaction"] == "all transactions"}
    assert pooled == {round(math.log(3 / (0.7 * 0.8 * 0.02)), 4)}


def test_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="unknown field"):
        EngineSettings.from_dict({"alpah": 0.1})
    with pytest.raises(ConfigError, match="alpha"):
        EngineSettings.from_dict({"alpha": 2})
    with pytest.raises(ConfigError, match="integer"):
        EngineSettings.from_dict({"max_holds": 1.5})
    assert EngineSettings.from_dict({"alpha": 0.05}).alpha == 0.05
    with pytest.raises(ConfigError, match="lean_rule"):
        EngineSettings.from_dict({"lean_rule": "maybe"})
    with pytest.raises(ConfigError, match="suspect_release_fraction"):
        EngineSettings.from_dict({"latency_suspect_fraction": 0.2})
    with pytest.raises(ConfigError, match="latency_suspect_fraction"):
        EngineSettings.from_dict({"latency_suspect_fraction": 0.0})
    with pytest.raises(ConfigError, match="pooled_alpha_share"):
        EngineSettings.from_dict({"pooled_alpha_share": 1.0})


def test_sequential_judge_is_registered_and_judges_one_window() -> None:
    results = stream(9, 60)
    inp = JudgeInput(
        canary=[r for r in results if r.version == "canary"],
        stable=[r for r in results if r.version == "stable"],
        history=history(),
        cumulative_canary_failures=0,
        slo=SLO(),
        weight=5,
        max_weight=100,
        step_index=1,
        holds=0,
        max_holds=3,
        transactions=TXNS,
    )
    d = get_judge("sequential").decide(inp)
    assert d.action == "increase"
    assert get_judge("threshold").decide(inp).action in ("increase", "hold")


def test_engine_works_on_unix_time_with_t0() -> None:
    base = 1_700_000_000.0
    eng = AnalysisEngine(SLO(), EngineSettings(), TXNS, [], t0=base)
    eng.observe(stream(10, 60, t0=base))
    d = eng.decide(base + 60.0, 5, step_end=True)
    assert d.action == "increase"
    assert math.isfinite(d.metrics["t"])


def _decide_every(
    eng: AnalysisEngine, results: list[TransactionResult], end: int, step: int = 60
) -> list[tuple[float, str, list[str], list[str]]]:
    """Interim checks every 5 s and a step end every ``step`` s, as replay does; the weight
    rises 5 points a step. Stops at the first rollback."""
    out = []
    weight, holds = 5, 0
    for t in range(5, end + 1, 5):
        eng.observe([r for r in results if t - 5 < r.t <= t])
        d = eng.decide(float(t), weight, step_end=t % step == 0, holds=holds)
        if d.action == "rollback" or t % step == 0:
            out.append((float(t), d.action, d.reasons, d.alerts))
        if d.action == "rollback":
            break
        if t % step == 0:
            holds = holds + 1 if d.action == "hold" else 0
            weight = weight if d.action == "hold" else min(95, weight + 5)
    return out


def _failing_stable(results: list[TransactionResult]) -> list[TransactionResult]:
    """Every stable run fails fast (an error page in 1 ms)."""
    return [
        TransactionResult(
            r.t, r.version, r.transaction, False, 1.0, 500, "step 1 'home': status 500"
        )
        if r.version == "stable"
        else r
        for r in results
    ]


def test_a_stable_that_fails_everything_holds_and_alerts_and_never_moves() -> None:
    # Issue 12.8: a broken stable is no baseline. Before, the engine increased twice and then
    # rolled back on latency compared against the 1 ms of failed stable runs.
    for extra in ({}, {"on_max_holds": "increase"}):
        eng = engine(**extra)
        steps = _decide_every(eng, _failing_stable(stream(21, 300)), 300)
        assert [a for _, a, _, _ in steps] == ["hold"] * 5, steps
        for _, _, reasons, alerts in steps:
            assert reasons[0].startswith("stable is unhealthy: ")
            assert "stable failed" in reasons[0] and "status 500" in reasons[0]
            assert alerts[0] == "stable_unhealthy"


def test_latency_is_compared_on_successful_runs_only() -> None:
    # A third of stable's runs fail at once (1 ms): their latency is not stable's.
    rng = np.random.default_rng(5)
    results = [
        TransactionResult(r.t, r.version, r.transaction, False, 1.0, 500, "status 500")
        if r.version == "stable" and rng.random() < 0.3
        else r
        for r in stream(22, 180)
    ]
    eng = engine()
    eng.observe(results)
    d = eng.decide(180.0, 5, step_end=True)
    assert not any("latency" in r for r in d.reasons if "canary typical" in r), d.reasons
    lat = [t for t in d.metrics["tests"] if t["test"] == "latency"]
    assert lat and all(t["log_e"] < 0 for t in lat), lat


def _warming(results: list[TransactionResult], amp: float, tau: float) -> list[TransactionResult]:
    """The canary's first seconds: up to 1 + amp times slower, decaying with time constant tau,
    and 15% errors in the first 10 s."""
    rng = np.random.default_rng(7)
    out = []
    for r in results:
        if r.version == "canary":
            lat = r.latency_ms * (1.0 + amp * math.exp(-r.t / tau))
            ok = r.ok and not (r.t < 10 and rng.random() < 0.15)
            r = TransactionResult(
                r.t,
                r.version,
                r.transaction,
                ok,
                lat,
                200 if ok else 503,
                None if ok else "step 1 'home': status 503",
            )
        out.append(r)
    return out


def test_a_warming_canary_is_not_rolled_back_but_was_without_the_warm_up() -> None:
    results = _warming(stream(23, 240), amp=1.0, tau=12.0)
    steps = _decide_every(engine(warmup_s=45.0), results, 240)
    assert all(a != "rollback" for _, a, _, _ in steps), steps
    assert [a for _, a, _, _ in steps][-1] == "increase"
    # The same data judged from its first second, as before: rolled back in the first step.
    early = _decide_every(engine(warmup_s=0.0), results, 240)
    assert early[-1][1] == "rollback" and early[-1][0] <= 60, early


def test_a_canary_still_slow_after_its_warm_up_is_caught_one_warm_up_later() -> None:
    results = _warming(stream(24, 240, canary_mult=1.6), amp=1.0, tau=12.0)
    steps = _decide_every(engine(warmup_s=45.0), results, 240)
    t, action, reasons, _ = steps[-1]
    assert action == "rollback" and t <= 60 + 45, steps
    assert "slower than" in reasons[0]


def test_with_a_short_warm_up_allowance_a_slow_canary_is_caught_within_its_warm_up() -> None:
    # A service whose warm-ups are short narrows the allowance (no hold, 15 s decay): 1.6x
    # slower under a warm-up is then beyond it within seconds (before the allowance: 65 s).
    results = _warming(stream(24, 240, canary_mult=1.6), amp=1.0, tau=12.0)
    eng = engine(warmup_s=45.0, warmup_hold_s=0.0, warmup_tau_s=15.0)
    t, action, reasons, _ = _decide_every(eng, results, 240)[-1]
    assert action == "rollback" and t < 45, (t, reasons)
    assert "slower than a warm-up is allowed to be" in reasons[0]


def test_a_canary_slow_after_its_warm_up_but_within_the_allowance_is_caught_after_it() -> None:
    results = _warming(stream(24, 420, canary_mult=1.35), amp=1.0, tau=12.0)
    steps = _decide_every(engine(warmup_s=45.0), results, 420)
    t, action, reasons, _ = steps[-1]
    assert action == "rollback" and 45 < t <= 420, steps
    assert "slower than the 10% tolerance allows" in reasons[0]


def _wandering(
    results: list[TransactionResult], seed: int, sd: float, tau: float
) -> list[TransactionResult]:
    """Each version's latency wanders by itself (an Ornstein-Uhlenbeck path of sd ``sd`` in
    log latency, correlation time ``tau``), shared by its transactions."""
    rng = np.random.default_rng(seed)
    end = int(max(r.t for r in results)) + 2
    phi = math.exp(-1.0 / tau)
    paths = {}
    for v in ("canary", "stable"):
        x = np.empty(end)
        x[0] = sd * rng.standard_normal()
        for i in range(1, end):
            x[i] = phi * x[i - 1] + sd * math.sqrt(1 - phi * phi) * rng.standard_normal()
        paths[v] = x
    return [
        TransactionResult(
            r.t, r.version, r.transaction, r.ok, r.latency_ms * math.exp(paths[r.version][int(r.t)])
        )
        for r in results
    ]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_slow_wander_of_both_versions_never_rolls_back(seed: int) -> None:
    # 5% (sd) wander over ~4 minutes in each version, for 40 minutes. With the independence
    # the tests assumed before (no wander allowance), such data was rolled back.
    results = _wandering(stream(30 + seed, 2400, rate=3.0), seed, sd=0.05, tau=240.0)
    steps = _decide_every(engine(forecast=False), results, 2400, step=120)
    assert all(a != "rollback" for _, a, _, _ in steps), steps[-1]


def test_wander_allowance_still_catches_a_real_regression() -> None:
    results = _wandering(stream(40, 600, canary_mult=1.4), 4, sd=0.05, tau=240.0)
    steps = _decide_every(engine(), results, 600)
    assert steps[-1][1] == "rollback", steps[-1]


def test_low_volume_holds_say_how_long_the_engine_needs() -> None:
    eng = engine()
    eng.observe(stream(25, 60, rate=0.1))
    d = eng.decide(60.0, 5, step_end=True)
    assert d.action == "hold"
    first = d.reasons[0]
    # The sample-size estimate, or why there is none (this short history's wander estimate).
    assert "runs/s that is about" in first
    assert "min at this rate" in first or "wander (sd" in first


def test_reasons_name_the_failures_and_give_evidence_in_words() -> None:
    # Issue 17.2: a canary failing 10% with HTTP 500 on its "pay" step.
    rng = np.random.default_rng(3)
    results = [
        TransactionResult(
            r.t,
            r.version,
            r.transaction,
            False,
            r.latency_ms,
            500,
            "step 3 'pay': status 500, expected 200",
        )
        if r.version == "canary" and r.transaction == "checkout" and rng.random() < 0.1
        else r
        for r in stream(26, 120)
    ]
    d = _decide_every(engine(), results, 120)[-1]
    assert d[1] == "rollback"
    text = d[2][0]
    assert text.startswith("checkout: ")
    assert "'step 3 \\'pay\\': status 500, expected 200' x" in text or "status 500" in text
    assert "tolerance" in text or "objective" in text
    assert "confidence" in text or "evidence 1 in 10^" in text
    assert "e=" not in text


def test_state_stays_bounded_as_the_rollout_runs_longer() -> None:
    # Snapshots stop at max_restarts (30 min), batch summaries at an hour: after that the
    # state no longer grows.
    sizes = []
    for seconds in (4200, 8400):
        eng = engine()
        for t in range(60, seconds + 1, 60):
            eng.observe(stream(t, 60, t0=t - 60, rate=0.5))
            eng.decide(float(t), 5, step_end=True)
        sizes.append(len(json.dumps(eng.to_state())))
    assert sizes[1] < 1.05 * sizes[0], sizes


def test_a_broken_canary_is_not_mistaken_for_a_warm_up() -> None:
    # Half its runs fail from the start: far beyond a warm-up's blip, so no waiting for it.
    steps = _decide_every(engine(warmup_s=45.0), stream(27, 120, canary_err=0.5), 120)
    t, action, reasons, _ = steps[-1]
    assert action == "rollback" and t < 45, steps
    assert "during its warm-up" in reasons[0] and "broken, not warming up" in reasons[0]


# --- the warm-up allowance -----------------------------------------------------------------------


def test_the_warm_up_allowance_starts_at_one_plus_the_amplitude_and_decays() -> None:
    assert allowance(1.1, 15.0, 0.0) == pytest.approx(math.log(2.1))
    values = [allowance(1.1, 15.0, t) for t in range(0, 120, 5)]
    assert all(a > b > 0 for a, b in itertools.pairwise(values))
    assert allowance(1.1, 15.0, 45.0) < math.log(1.06)
    assert allowance(0.0, 15.0, 0.0) == 0.0 and allowance(1.1, 0.0, 0.0) == 0.0


def test_a_canary_three_times_as_slow_from_the_start_is_caught_within_its_warm_up() -> None:
    # Before the allowance, its first 45 s were left out of every test: no verdict before 45 s.
    steps = _decide_every(engine(warmup_s=45.0), stream(31, 120, canary_mult=3.0), 120)
    t, action, reasons, _ = steps[-1]
    assert action == "rollback" and t <= 30, steps
    assert "into its warm-up" in reasons[0] and "slower than a warm-up is allowed" in reasons[0]


def _shaped(results: list[TransactionResult], shape: str) -> list[TransactionResult]:
    """The held-out-like warm-ups of another shape (2.1x at first, over 60 s): linear decay, or
    steps of 2.1x, 1.55x and 1.22x of 20 s each."""
    out = []
    for r in results:
        if r.version == "canary" and r.t < 60:
            u = r.t / 60.0
            if shape == "linear":
                mult = 1.0 + 1.1 * (1.0 - u)
            else:
                mult = 1.0 + 1.1 * (1.0 if u < 1 / 3 else 0.5 if u < 2 / 3 else 0.2)
            r = TransactionResult(r.t, r.version, r.transaction, r.ok, r.latency_ms * mult)
        out.append(r)
    return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shape", ["exponential", "linear", "steps"])
def test_the_slowest_warm_ups_the_allowance_covers_are_never_rolled_back(
    seed: int, shape: str
) -> None:
    # Exponential: twice as slow at first, 15 s decay, 15% errors for 10 s (the bench's worst
    # warm-up); linear and steps over 60 s (the alternative generator's worst).
    base = stream(40 + seed, 120)
    results = _warming(base, amp=1.1, tau=15.0) if shape == "exponential" else _shaped(base, shape)
    steps = _decide_every(engine(warmup_s=45.0), results, 120)
    assert all(a != "rollback" for _, a, _, _ in steps), steps


def test_warm_up_errors_are_left_out_of_the_tests_for_a_short_blip_only() -> None:
    eng = engine(warmup_s=45.0, warmup_errors_s=20.0)
    fail = [
        TransactionResult(t, "canary", "browse", False, 50.0, 500, "status 500")
        for t in (5.0, 10.0, 25.0, 30.0, 35.0)
    ]
    eng.observe(fail)
    led = eng.ledger
    assert led.errors("browse|canary", 0).events == 3  # from 20 s on
    assert led.warmup_runs("browse", "canary") == (2, 2)
    d = eng.decide(40.0, 5, step_end=False)
    assert d.metrics["cumulative_canary_failures"] == 5


def test_the_warm_up_test_survives_a_state_round_trip_and_older_states_load() -> None:
    eng = engine(warmup_s=45.0)
    eng.observe(stream(32, 22, canary_mult=2.0))
    before = eng.decide(20.0, 5, step_end=False).metrics["warmup"]
    state = json.loads(json.dumps(eng.to_state()))
    again = AnalysisEngine.from_state(state)
    assert again.decide(20.0, 5, step_end=False).metrics["warmup"] == before
    del state["warm_buckets"]
    old = AnalysisEngine.from_state(state)
    assert old.ledger.warm_buckets == {}
    assert old.decide(20.0, 5, step_end=False).action == "hold"


def test_the_warm_up_test_can_be_switched_off() -> None:
    steps = _decide_every(
        engine(warmup_s=45.0, warmup_alpha_share=0.0), stream(31, 120, canary_mult=2.0), 120
    )
    t, action, _, _ = steps[-1]
    assert action == "rollback" and t >= 45, steps


# --- reasons ------------------------------------------------------------------------------------


def _with_steps(results: list[TransactionResult], slow: float) -> list[TransactionResult]:
    """Three steps per run ('home', 'cart', 'pay'); the canary's 'pay' takes ``slow`` times as
    long, and the run's latency is the steps' sum."""
    out = []
    for r in results:
        parts = [0.2, 0.3, 0.5]
        names = ["home", "cart", "pay"]
        ms = [r.latency_ms * p for p in parts]
        if r.version == "canary":
            ms[2] *= slow
        steps = [
            StepResult(n, "GET", f"http://x/{n}", True, m, 200)
            for n, m in zip(names, ms, strict=True)
        ]
        out.append(
            TransactionResult(
                r.t, r.version, r.transaction, r.ok, sum(ms), r.status, r.error, steps
            )
        )
    return out


def test_a_latency_reason_names_the_slow_step_of_a_multi_step_transaction() -> None:
    steps = _decide_every(engine(), _with_steps(stream(33, 240), slow=2.5), 240)
    _, action, reasons, _ = steps[-1]
    assert action == "rollback", steps
    # Pooled over both transactions: the step and its transaction; per transaction: the step.
    assert "the slow step is 'pay' of checkout (canary " in reasons[0], reasons[0]
    one = [r for r in reasons if r.startswith("browse: canary typical latency")]
    assert one and "the slow step is 'pay' (canary " in one[0], reasons


def test_a_reason_names_no_step_for_single_step_transactions() -> None:
    steps = _decide_every(engine(), stream(34, 240, canary_mult=1.6), 240)
    assert steps[-1][1] == "rollback" and "slow step" not in " ".join(steps[-1][2])


def test_step_evidence_lets_a_burst_of_one_version_make_up_for_a_thin_other() -> None:
    from canary.analysis.engine import step_evidence

    assert step_evidence(10, 10) == 10
    assert step_evidence(8, 21) > 10  # bursty probes: as good as 10 of each
    assert step_evidence(7, 12) < 10
    assert step_evidence(0, 50) == 0


def test_failures_in_runs_count_as_fewer_independent_ones_and_survive_a_round_trip() -> None:
    eng = engine()
    eng.observe(history())
    results = stream(3, 120)
    # Canary checkout failures come in runs of four: a restarting pod, not four bad requests.
    canary = [r for r in results if r.version == "canary" and r.transaction == "checkout"]
    for i in range(0, 200, 40):
        for r in canary[i : i + 4]:
            r.ok, r.error = False, "status 503"
    eng.observe(results)
    phi = eng.ledger.failure_dispersion("checkout")
    assert 3.0 <= phi <= 4.0
    assert eng.ledger.failure_dispersion("browse") == 1.0  # too few runs of failures to tell
    again = AnalysisEngine.from_state(json.loads(json.dumps(eng.to_state())))
    assert again.ledger.failure_dispersion("checkout") == phi
