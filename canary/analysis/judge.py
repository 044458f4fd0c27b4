"""Judges: a step's results in, a Decision (increase / hold / promote / rollback) with reasons out.

The v0 judge, registered as "threshold" (and "default"), applies these rules to the current
step window, per expected transaction:

1. Evidence. A transaction with fewer than ``min_samples`` canary or stable results (none at all
   included) is "too little evidence" and holds the step.
2. Tests, each at a Bonferroni share of ``alpha`` (default 0.01 per step over all tests of the
   step, so that identical versions are rarely rolled back):
   - canary success rate below ``success_threshold``: exact binomial test of the failures
     (a confidence bound, not the point estimate of a handful of runs);
   - canary p95 above ``latency_p95_ms`` (when set): exact test of the share of runs above it;
   - canary error rate above stable's by more than ``max_error_rate_increase_pp``: Newcombe
     (Wilson-based) bound on the difference with the tolerance as the null margin;
   - canary latency above stable's by more than ``max_latency_increase_pct``, two ways: a
     bootstrap bound on the ratio of p95s (tail regressions) and a Mann-Whitney test on log
     latency with the tolerance as the shift (a slowdown of every run, seen with few runs).
   Each test fails on strong evidence (p < alpha share), is inconclusive on some evidence
   (p < suspect_alpha share, default 0.2) and passes otherwise.
3. Stable health. Stable's window is tested against its own history (EWMA band of per-interval
   success rate and p95, see baseline.py). Stable far off its band means an event that is not the
   canary's: hold and alert. An absolute SLO breach that stable shows too in the same window holds
   rather than rolls back, for the same reason.
4. Error budget. More failed canary transactions over the rollout than ``error_budget`` raises an
   alert; it also rolls back when ``rollback_on_error_budget``.
5. Action. Any failed canary test (or the budget rule) rolls back. Otherwise any hold reason
   holds, unless the step has already held ``max_holds`` times: then it rolls back (fail safe)
   and says so. Otherwise "promote" at ``weight >= max_weight``, else "increase".

Each test judges the window alone; repeating it step after step raises the false-alarm rate
over a rollout (the sequential engine that replaces this judge addresses that).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from canary.analysis.absolute import check_latency, check_success
from canary.analysis.baseline import Baseline
from canary.analysis.checks import Check, json_safe
from canary.analysis.compare import DEFAULT_BOOTSTRAP, compare
from canary.analysis.decision import (
    Decision,
    Judge,
    JudgeInput,
    JudgeSession,
    JudgeSetup,
    RolloutJudge,
)
from canary.analysis.engine import AnalysisEngine, EngineSettings, SequentialJudge
from canary.analysis.metrics import stats_of
from canary.analysis.slo import SLO
from canary.errors import unknown_name
from canary.probing.result import TransactionResult


class WindowSession:
    """A stateless judge in the controller's seat: it judges what it observed since it opened.

    The controller opens a session per window, so "observed" is the window's results; the
    state is None (the record already counts the canary's failures).
    """

    def __init__(self, judge: Judge, setup: JudgeSetup) -> None:
        self.judge = judge
        self.setup = setup
        self.results: list[TransactionResult] = []

    def observe(self, results: Sequence[TransactionResult]) -> None:
        self.results.extend(results)

    def decide(
        self, t: float, weight: int, *, step_end: bool, holds: int = 0, final: bool = False
    ) -> Decision:
        if not step_end:
            return Decision("hold", ["judged at the step's end only"], metrics={"interim": True})
        s = self.setup
        return self.judge.decide(
            JudgeInput(
                canary=[r for r in self.results if r.version == "canary"],
                stable=[r for r in self.results if r.version == "stable"],
                history=s.history(),
                cumulative_canary_failures=s.canary_failures,
                slo=s.slo,
                weight=weight,
                max_weight=s.max_weight,
                step_index=s.step,
                holds=holds,
                max_holds=s.max_holds,
                transactions=list(s.transactions),
                min_samples=s.min_samples,
            )
        )

    def to_state(self) -> dict[str, Any] | None:
        return None


class WindowJudge:
    """Mixin: a stateless ``decide(JudgeInput)`` judge opened as a WindowSession."""

    interim: ClassVar[bool] = False

    def open(self, setup: JudgeSetup, state: dict[str, Any] | None) -> JudgeSession:
        judge: Judge = self  # type: ignore[assignment]
        return WindowSession(judge, setup)


@dataclass
class SequentialRolloutJudge(SequentialJudge):
    """The sequential engine, kept across the rollout: its state is the engine's evidence.

    It may look while a step runs (its tests stay valid however often they are looked at). The
    history is read only when the engine is built; afterwards its state carries the baseline.
    """

    interim: ClassVar[bool] = True

    def open(self, setup: JudgeSetup, state: dict[str, Any] | None) -> JudgeSession:
        if state:
            return AnalysisEngine.from_state(state)
        return AnalysisEngine(
            setup.slo,
            EngineSettings.from_dict(setup.engine),
            list(setup.transactions),
            setup.history(),
            t0=setup.t0,
        )


@dataclass
class ThresholdJudge(WindowJudge):
    """The v0 judge: fixed-window tests against tolerances and objectives (module docstring)."""

    name: str = "threshold"
    alpha: float = 0.01
    suspect_alpha: float = 0.2
    health_alpha: float = 0.01
    bucket_s: float = 60.0
    n_boot: int = DEFAULT_BOOTSTRAP
    seed: int = 0

    def decide(self, inp: JudgeInput) -> Decision:
        slo = inp.slo
        canary, stable = _by_transaction(inp.canary), _by_transaction(inp.stable)
        txns = list(inp.transactions) or sorted(set(canary) | set(stable))
        rollback: list[str] = []
        hold: list[str] = []
        alerts: list[str] = []
        per_txn: dict[str, dict[str, Any]] = {}

        if inp.cumulative_canary_failures > slo.error_budget:
            msg = (
                f"error budget spent: {inp.cumulative_canary_failures} failed canary "
                f"transactions so far, budget {slo.error_budget}"
            )
            alerts.append(msg)
            if slo.rollback_on_error_budget:
                rollback.append(msg + " (rollback_on_error_budget is set)")

        ready = []
        for t in txns:
            nc, ns = len(canary.get(t, [])), len(stable.get(t, []))
            if nc >= inp.min_samples and ns >= inp.min_samples:
                ready.append(t)
            else:
                hold.append(
                    f"{t}: too little evidence: {nc} canary and {ns} stable runs in this window, "
                    f"need at least {inp.min_samples} of each"
                )

        tests_per_txn = 4 + (slo.latency_p95_ms is not None)
        m = max(1, len(ready) * tests_per_txn)
        a, sa = self.alpha / m, self.suspect_alpha / m
        ha = self.health_alpha / max(1, 2 * len(ready))
        baseline = Baseline.from_history(inp.history, self.bucket_s) if inp.history else None

        passed: list[str] = []
        for t in ready:
            c, s = canary[t], stable[t]
            checks = compare(
                t, c, s, slo, alpha=a, suspect_alpha=sa, n_boot=self.n_boot, seed=self.seed
            )
            absolute = [check_success(t, c, slo.success_threshold, alpha=a, suspect_alpha=sa)]
            if slo.latency_p95_ms is not None:
                absolute.append(check_latency(t, c, slo.latency_p95_ms, alpha=a, suspect_alpha=sa))
            shared = _shared_breaches(t, s, slo, absolute, a, sa)
            health = baseline.check_stable(t, s, alpha=ha) if baseline else []
            per_txn[t] = {"checks": [ch.to_dict() for ch in checks + absolute + shared + health]}
            t_rollback, t_hold, t_alerts = _classify(checks, absolute, shared, health)
            rollback += t_rollback
            hold += t_hold
            alerts += t_alerts
            if not t_rollback and not t_hold:
                passed.append(_pass_summary(t, c, s))

        metrics = _metrics(inp, canary, stable, txns, per_txn, baseline)
        metrics.update(judge=self.name, tests=m, alpha_per_test=a, suspect_alpha_per_test=sa)
        if rollback:
            return Decision("rollback", rollback + hold, alerts=alerts, metrics=metrics)
        if hold:
            if inp.holds >= inp.max_holds:
                first = (
                    f"held {inp.holds} times at step {inp.step_index} (max {inp.max_holds}) "
                    f"without enough evidence that the canary is good; rolling back to fail safe"
                )
                return Decision("rollback", [first, *hold], alerts=alerts, metrics=metrics)
            return Decision("hold", hold, alerts=alerts, metrics=metrics)
        final = inp.weight >= inp.max_weight
        head = (
            f"all checks within tolerance at weight {inp.weight}% "
            f"({'final step: promoting' if final else 'increasing'})"
        )
        return Decision(
            "promote" if final else "increase", [head, *passed], alerts=alerts, metrics=metrics
        )


def _by_transaction(results: Sequence[TransactionResult]) -> dict[str, list[TransactionResult]]:
    # The inputs are already split by version; grouping by name alone means a mislabelled
    # version field cannot hide results.
    out: dict[str, list[TransactionResult]] = {}
    for r in results:
        out.setdefault(r.transaction, []).append(r)
    return out


def _classify(
    comparisons: list[Check], absolute: list[Check], shared: list[Check], health: list[Check]
) -> tuple[list[str], list[str], list[str]]:
    """One transaction's checks as (rollback reasons, hold reasons, alerts)."""
    rollback: list[str] = []
    hold: list[str] = []
    alerts: list[str] = []
    for ch in health:
        if ch.verdict == "fail":
            hold.append(f"{ch.reason}; holding: not the canary's doing")
            alerts.append(ch.reason)
    for ch in comparisons + absolute:
        if ch.verdict == "fail" and ch in absolute and _is_shared(ch, shared):
            hold.append(f"{ch.reason}, but stable breaches it too in this window; holding")
        elif ch.verdict == "fail":
            rollback.append(ch.reason)
        elif ch.verdict == "inconclusive":
            hold.append(ch.reason)
    return rollback, hold, alerts


def _shared_breaches(
    t: str,
    stable: Sequence[TransactionResult],
    slo: SLO,
    absolute: list[Check],
    alpha: float,
    suspect_alpha: float,
) -> list[Check]:
    """The same absolute tests on stable, only where the canary failed them."""
    out = []
    for ch in absolute:
        if ch.verdict != "fail":
            continue
        if ch.check == "canary_success_slo":
            out.append(
                check_success(
                    t,
                    stable,
                    slo.success_threshold,
                    alpha=alpha,
                    suspect_alpha=suspect_alpha,
                    who="stable",
                )
            )
        elif ch.check == "canary_latency_slo" and slo.latency_p95_ms is not None:
            out.append(
                check_latency(
                    t,
                    stable,
                    slo.latency_p95_ms,
                    alpha=alpha,
                    suspect_alpha=suspect_alpha,
                    who="stable",
                )
            )
    return out


def _is_shared(canary_check: Check, stable_checks: list[Check]) -> bool:
    # "inconclusive" for stable is enough: a comparison test already catches a canary that is
    # much worse than a mildly breaching stable.
    twin = canary_check.check.replace("canary_", "stable_", 1)
    return any(s.check == twin and s.verdict != "pass" for s in stable_checks)


def _pass_summary(
    t: str, canary: Sequence[TransactionResult], stable: Sequence[TransactionResult]
) -> str:
    c, s = stats_of(canary), stats_of(stable)
    return (
        f"{t}: canary success {c.success_rate:.1f}% ({c.ok}/{c.n}), p95 {c.p95_ms:.0f} ms "
        f"vs stable {s.success_rate:.1f}% ({s.ok}/{s.n}), p95 {s.p95_ms:.0f} ms"
    )


def _metrics(
    inp: JudgeInput,
    canary: dict[str, list[TransactionResult]],
    stable: dict[str, list[TransactionResult]],
    txns: list[str],
    per_txn: dict[str, dict[str, Any]],
    baseline: Baseline | None,
) -> dict[str, Any]:
    for t in sorted(set(txns) | set(canary) | set(stable)):
        entry = per_txn.setdefault(t, {"checks": []})
        entry["canary"] = stats_of(canary.get(t, [])).to_dict()
        entry["stable"] = stats_of(stable.get(t, [])).to_dict()
        entry["expected"] = t in txns
        if baseline:
            entry["baseline"] = {
                metric: dict(
                    zip(("mean", "std", "n_buckets"), baseline.band(t, metric), strict=True)
                )
                for metric in ("success_rate", "p95_ms")
            }
    return json_safe(
        {
            "canary": stats_of(inp.canary).to_dict(),
            "stable": stats_of(inp.stable).to_dict(),
            "per_transaction": per_txn,
            "weight": inp.weight,
            "step_index": inp.step_index,
            "holds": inp.holds,
            "cumulative_canary_failures": inp.cumulative_canary_failures,
            "error_budget": inp.slo.error_budget,
        }
    )


@dataclass
class ScriptedJudge(WindowJudge):
    """A fake for tests of callers: returns the given decisions in order, then repeats the last."""

    decisions: list[Decision]
    name: str = "scripted"
    calls: list[JudgeInput] = field(default_factory=list)

    def decide(self, inp: JudgeInput) -> Decision:
        self.calls.append(inp)
        i = min(len(self.calls), len(self.decisions)) - 1
        return self.decisions[i]


JUDGES: dict[str, type] = {
    "threshold": ThresholdJudge,
    "default": ThresholdJudge,
    "sequential": SequentialRolloutJudge,
}


def get_judge(name: str) -> Judge:
    """A judge by registry name; an unknown name is a ConfigError listing the known ones."""
    judge: Judge = _judge_class(name)()
    return judge


def get_rollout_judge(name: str) -> RolloutJudge:
    """The same judge, as the controller drives it (open → observe / decide / to_state)."""
    judge: RolloutJudge = _judge_class(name)()
    return judge


def _judge_class(name: str) -> type:
    try:
        return JUDGES[name]
    except KeyError:
        raise unknown_name("judge", name, list(JUDGES)) from None
