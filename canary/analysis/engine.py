"""The sequential analysis engine: results in time order in, decisions out, state as plain JSON.

One engine follows one rollout. ``observe`` folds results into the ledger (O(1) per result);
``decide`` is cheap enough to call every few seconds, so a rollback can come at any moment, and
the same code runs live (state persisted between Celery tasks through ``to_state``/
``from_state``) and in replay. This module wires the parts: ledger.py (memory), tests.py (the
anytime-valid tests), predict.py (forecasts), reasons.py (sentences) and settings.py (knobs).
The method is described in docs/analysis.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from canary.analysis.decision import Decision, JudgeInput
from canary.analysis.holds import evidence_holds, step_evidence
from canary.analysis.ledger import FAIL, Ledger, history_wander, reference_from_history
from canary.analysis.predict import predict
from canary.analysis.reasons import describe, evidence, summaries, warmup_reason
from canary.analysis.settings import EngineSettings
from canary.analysis.slo import SLO
from canary.analysis.stats import binom_sf, newcombe_p_value
from canary.analysis.tests import ALL, TestOutcome, Wander, run_tests
from canary.analysis.warmup import WarmupOutcome, buckets_planned, warmup_tests
from canary.probing.result import TransactionResult

__all__ = [
    "ALL",
    "AnalysisEngine",
    "EngineSettings",
    "SequentialJudge",
    "TestOutcome",
    "step_evidence",
]

STATE_VERSION = 2
# The tests whose suspicion outlives the step that raised it (suspect_release_fraction).
SUSPECT_TESTS = ("latency", "tail latency")


def shared_doubt(cf: float, cn: float, sf: float, sn: float, phi: float, bar: float) -> str | None:
    """Whether stable's ``sn`` runs (``sf`` failing or slow) in an interval rule out that stable
    fails as often as the canary did then (``cf`` of ``cn``): None when they do (a one-sided
    Newcombe test of "canary worse than stable" on the counts divided by ``phi``, as failures
    in runs count as fewer independent ones, with p below ``bar``), else the sentence saying
    why not."""
    k1, n1 = round(cf / phi), max(1, round(cn / phi))
    k2, n2 = round(sf / phi), round(sn / phi)
    if n2 < 1:
        return (
            f"stable's {sn:.0f} runs since then cannot rule out that it shares it: not known "
            f"to be the canary's doing"
        )
    p = newcombe_p_value(k1, n1, k2, n2, 0.0)
    if p < bar:
        return None
    return (
        f"stable's {sn:.0f} runs since then do not rule out that it shares it (worth {n2} "
        f"independent runs, p={p:.2g}; a rollback needs p below {bar:g}): not known to be "
        f"the canary's doing"
    )


class AnalysisEngine:
    """Accumulates canary and stable results of one rollout and decides (module docstring)."""

    def __init__(
        self,
        slo: SLO,
        settings: EngineSettings | None = None,
        transactions: Sequence[str] = (),
        history: Iterable[TransactionResult] = (),
        *,
        t0: float = 0.0,
    ) -> None:
        self.slo = slo
        self.settings = settings or EngineSettings()
        self.t0 = float(t0)
        txns = list(dict.fromkeys(transactions))
        history = list(history)
        s = self.settings
        self.ledger = Ledger(
            slo,
            self.settings,
            txns,
            reference_from_history(history, txns),
            self.t0,
            history_wander(history, s.batch_s, s.latency_floor_sd),
        )
        self.forecast_checked = -1
        self.failure_offset = 0
        self.stable_shift_accepted = False
        # "transaction|test" of latency tests that held a step as not yet conclusive, with the
        # time (s after t0) they first did: they hold until their evidence falls back.
        self.suspects: dict[str, float] = {}
        self._wander = Wander()
        # The warm-up tests change only when a bucket closes or a warm-up result arrives.
        self._warm_key: tuple[int, float] | None = None
        self._warm: list[WarmupOutcome] = []

    @property
    def transactions(self) -> list[str]:
        return self.ledger.transactions

    @property
    def reference(self) -> dict[str, dict[str, float]]:
        return self.ledger.reference

    # --- state ---------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Everything needed to continue, as plain JSON (lists, dicts, numbers, strings)."""
        return {
            "version": STATE_VERSION,
            "slo": self.slo.to_dict(),
            "settings": self.settings.to_dict(),
            "t0": self.t0,
            "transactions": list(self.transactions),
            "reference": self.reference,
            **self.ledger.to_state(),
            "forecast_checked": self.forecast_checked,
            "failure_offset": self.failure_offset,
            "stable_shift_accepted": self.stable_shift_accepted,
            "suspects": dict(self.suspects),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> AnalysisEngine:
        version = state.get("version")
        if version not in (1, STATE_VERSION):
            raise ValueError(f"unknown engine state version {version!r}")
        eng = cls(
            SLO.from_dict(state["slo"]),
            EngineSettings.from_dict(state["settings"]),
            state["transactions"],
            t0=state["t0"],
        )
        eng.ledger.reference.update({k: dict(v) for k, v in state["reference"].items()})
        eng.ledger.load(state, int(version))
        eng.forecast_checked = int(state["forecast_checked"])
        eng.failure_offset = int(state.get("failure_offset", 0))
        eng.stable_shift_accepted = bool(state.get("stable_shift_accepted", False))
        eng.suspects = {str(k): float(v) for k, v in state.get("suspects", {}).items()}
        return eng

    # --- observing -----------------------------------------------------------------------------

    def observe(self, results: Iterable[TransactionResult]) -> None:
        """Fold results (in time order, any mix of versions) into the running statistics."""
        self.ledger.observe(results)

    # --- deciding ------------------------------------------------------------------------------

    def decide(
        self,
        t: float,
        weight: int,
        *,
        step_end: bool,
        holds: int = 0,
        final: bool = False,
    ) -> Decision:
        """The decision at time ``t`` from everything observed so far.

        Interim checks (``step_end=False``) only ever roll back; otherwise they answer "hold"
        with ``metrics["interim"] = True``, which callers treat as "carry on". At a step end the
        answer is increase (``promote`` when ``final``), hold or rollback. ``holds`` counts the
        consecutive holds already spent at this step.
        """
        led, s = self.ledger, self.settings
        rel = t - self.t0
        led.snapshot_until(rel)
        if step_end and rel < s.warmup_s and not led.warm_off:
            # A step that ends within the warm-up (short steps, like the demo's): no room for
            # one, so its results count after all.
            led.end_warmup_early()
        led.mark_weight(weight)
        tests = run_tests(led, self._wander)
        # Strongest evidence first, so that the first reason is the one that matters.
        tests.sort(key=lambda o: o.threshold - o.log_e)
        doubts: dict[int, str] = {}
        for o in tests:
            if o.log_e >= self._suspect_bar(o):
                why = self._sharing(o)
                o.shared = why is not None
                if why:
                    doubts[id(o)] = why
        alerts: list[str] = []
        rollback: list[str] = []
        unresolved: list[str] = []
        for o in tests:
            if o.log_e >= o.threshold:
                # A breach stable shows too is an alert, not a hold: the stable-health check
                # already holds while stable is unhealthy, and the breach's evidence outlives
                # the incident by many minutes. One that stable's runs at the same time cannot
                # rule out holds as well, until they can (or show it too).
                why = doubts.get(id(o), "")
                (alerts if o.shared else rollback).append(describe(o, led, self._wander, why))
                if why:
                    unresolved.append(f"{alerts[-1]}; holding the weight until it is known")
        failures = self.failure_offset + int(
            sum(
                led.cum[f"{x}|canary"][FAIL] + led.warmup_runs(x, "canary")[1]
                for x in self.transactions
            )
        )
        if failures > self.slo.error_budget:
            msg = (
                f"error budget spent: {failures} failed canary transactions so far, "
                f"budget {self.slo.error_budget}"
            )
            alerts.append(msg)
            if self.slo.rollback_on_error_budget:
                rollback.append(msg + " (rollback_on_error_budget is set)")
        rollback += self._broken_in_warmup()
        warm = self._warmup_tests(rel)
        rollback += [warmup_reason(o, led) for o in warm if o.log_e >= o.threshold]
        metrics = self._metrics(t, weight, tests, failures)
        if warm:
            metrics["warmup"] = [
                {
                    "transaction": o.transaction,
                    "log_e": round(o.log_e, 4) if math.isfinite(o.log_e) else None,
                    "log_threshold": round(o.threshold, 4),
                }
                for o in warm
            ]
        if rollback:
            return Decision("rollback", rollback, alerts=alerts, metrics=metrics)
        found = self._predict(t, weight)
        if found is not None:
            metrics["forecast"] = found.metrics
            return Decision(
                "rollback", [found.reason], predictive=True, alerts=alerts, metrics=metrics
            )
        if not step_end:
            metrics["interim"] = True
            return Decision(
                "hold", ["interim check: no regression found"], alerts=alerts, metrics=metrics
            )
        unhealthy = self._stable_unhealthy(rel)
        if unhealthy:
            # No baseline: never move traffic, whatever max_holds says, and never roll back on
            # a comparison with it. The controller sends the alert.
            return Decision(
                "hold",
                [f"stable is unhealthy: {'; '.join(unhealthy)}; holding the weight"],
                alerts=["stable_unhealthy", *alerts],
                metrics=metrics,
            )
        evidence = evidence_holds(led, self._wander, rel)
        hold = unresolved + [
            f"{describe(o, led, self._wander)} (not yet conclusive; holding for more evidence)"
            for o in tests
            if not o.shared and self._suspect_bar(o) <= o.log_e < o.threshold
        ]
        hold += [
            f"{describe(o, led, self._wander)} (looks beyond tolerance and worse than stable; "
            f"holding the weight until it is certain)"
            for o in tests
            if o.lean and o.log_e < self._suspect_bar(o)
        ]
        hold += self._still_suspect(tests, rel)
        degraded = self._stable_health(rel)
        alerts += degraded
        if degraded and self.stable_shift_accepted:
            # Moved on past a lasting shift once: stable's history no longer describes it, and
            # the comparison at the same time still holds; alerts only.
            degraded = []
        if degraded and not hold and not evidence and holds >= s.max_holds:
            # An infrastructure change under both versions (stable slow or failing against its
            # history for several steps) is not the canary's doing, and the comparison with
            # stable at the same time still holds: move on, with the alert, rather than fail
            # safe on a canary that shows no regression.
            head = (
                f"stable has been off its history for {holds} holds at weight {weight}%; the "
                f"canary shows no regression against it: moving on"
            )
            led.mark_step(rel)
            self.stable_shift_accepted = True
            return Decision(
                "promote" if final else "increase",
                [head, *degraded, *summaries(led)],
                alerts=alerts,
                metrics=metrics,
            )
        hold += [f"{msg}; holding: not the canary's doing" for msg in degraded]
        if evidence and not hold and holds < s.max_evidence_holds:
            # Too few runs only (low volume): the step grows until it has them. That is not
            # a reason to fail safe; it is bounded by max_evidence_holds.
            return Decision("hold", evidence, alerts=alerts, metrics=metrics)
        hold = evidence + hold
        if hold:
            if holds >= s.max_holds:
                head = (
                    f"held {holds} times at weight {weight}% (max {s.max_holds}) "
                    f"without enough evidence that the canary is good"
                )
                if s.on_max_holds == "rollback":
                    return Decision(
                        "rollback",
                        [head + "; rolling back to fail safe", *hold],
                        alerts=alerts,
                        metrics=metrics,
                    )
                alerts.append(head)
                led.mark_step(rel)
                return Decision(
                    "promote" if final else "increase",
                    [head + "; moving on as configured (on_max_holds: increase)", *hold],
                    alerts=alerts,
                    metrics=metrics,
                )
            return Decision("hold", hold, alerts=alerts, metrics=metrics)
        led.mark_step(rel)
        head = (
            f"all checks within tolerance at weight {weight}% "
            f"({'final step: promoting' if final else 'increasing'})"
        )
        return Decision(
            "promote" if final else "increase",
            [head, *summaries(led)],
            alerts=alerts,
            metrics=metrics,
        )

    def _suspect_bar(self, o: TestOutcome) -> float:
        """The log e-value from which a test holds a step as not yet conclusive."""
        s = self.settings
        share = s.latency_suspect_fraction if o.test in SUSPECT_TESTS else s.suspect_fraction
        return share * o.threshold

    def _still_suspect(self, tests: list[TestOutcome], rel: float) -> list[str]:
        """Hold reasons for latency tests that held a step as not yet conclusive and have not
        fallen back below ``suspect_release_fraction`` of their bar since (step ends only).

        Without this memory a test whose evidence hovers about the suspect bar (a steady
        regression that the wander allowance keeps from concluding) holds a step, dips below
        the bar at the next, lets the weight grow, and can end in a promotion after holds that
        never ran consecutively into the fail-safe."""
        s, led = self.settings, self.ledger
        out = []
        for o in tests:
            if o.test not in SUSPECT_TESTS or o.shared:
                continue
            key = f"{o.transaction}|{o.test}"
            if o.log_e >= self._suspect_bar(o):
                self.suspects.setdefault(key, rel)
                continue
            since = self.suspects.get(key)
            if since is None:
                continue
            bar = s.suspect_release_fraction * o.threshold
            if o.log_e < bar:
                del self.suspects[key]
                continue
            out.append(
                f"{describe(o, led, self._wander)} (held as possibly slower since t={since:.0f}s "
                f"and not cleared: holding until its evidence falls below {evidence(bar)})"
            )
        return out

    def _warmup_tests(self, rel: float) -> list[WarmupOutcome]:
        s, led = self.settings, self.ledger
        closed = min(buckets_planned(led), max(0, math.floor(rel / s.warmup_bucket_s)))
        runs = sum(b[0] for v in led.warm_buckets.values() for b in v.values())
        key = (closed, runs)
        if key != self._warm_key:
            self._warm_key, self._warm = key, warmup_tests(led, rel)
        return self._warm

    def _predict(self, t: float, weight: int) -> Any:
        s = self.settings
        if not s.forecast or s.forecast_horizon_s <= 0:
            return None
        closed = math.floor((t - self.t0) / s.forecast_bucket_s) - 1
        if closed <= self.forecast_checked:
            return None
        self.forecast_checked = closed
        return predict(self.ledger, self._wander, closed, weight)

    def _sharing(self, o: TestOutcome) -> str | None:
        """Why an absolute breach is not the canary's doing, or None when it is: "" when stable
        shows it too, or why stable's runs in the same interval cannot rule out that they would
        (too few, or not clean enough: an incident under both versions whose failures happened
        to fall in the canary's runs, probed at other instants than stable's)."""
        if o.test not in ("success objective", "latency objective"):
            return None
        led, slo = self.ledger, self.slo
        j = round(o.start / self.settings.restart_s)
        txns = self.transactions if o.transaction == ALL else [o.transaction]
        read = led.errors if o.test == "success objective" else led.over
        cn = sum(read(f"{x}|canary", j).n for x in txns)
        cf = sum(read(f"{x}|canary", j).events for x in txns)
        sn = sum(read(f"{x}|stable", j).n for x in txns)
        sf = sum(read(f"{x}|stable", j).events for x in txns)
        stable_rate = sf / sn if sn else 0.0
        canary_rate = cf / cn if cn else 0.0
        if o.test == "success objective":
            limit = 1.0 - slo.success_threshold / 100.0
            margin = slo.max_error_rate_increase_pp / 100.0
            # Failures come in runs: k clustered failures are worth k / phi independent ones.
            phi = max(led.failure_dispersion(x) for x in txns)
        else:
            limit, margin, phi = 0.05, 0.0, 1.0
        if sn and stable_rate >= limit - 1e-9:
            return ""
        if o.test == "success objective" and canary_rate - stable_rate <= margin:
            return ""
        if j == 0:
            # Bad since its start is the canary's; an onset part-way through may be an incident
            # under both versions, which stable's runs at the same time must rule out.
            return None
        return shared_doubt(cf, cn, sf, sn, phi, self.settings.shared_rule_out_p)

    def _broken_in_warmup(self) -> list[str]:
        """A canary that fails far more than a warm-up's blip of errors is broken, not warming:
        it need not wait for the warm-up to end (significantly above 30% of its runs)."""
        s, led = self.settings, self.ledger
        out = []
        bar = s.alpha / max(1, len(self.transactions))
        for txn in self.transactions:
            n, fails = led.warmup_runs(txn, "canary")
            if n >= 20 and binom_sf(fails, n, 0.3) < bar:
                sn, sf = led.warmup_runs(txn, "stable")
                top = ", ".join(f"{m!r} x{c}" for m, c in led.top_messages(txn, "canary", k=2))
                out.append(
                    f"{txn}: canary failed {fails} of {n} runs during its warm-up (stable {sf} of "
                    f"{sn}): broken, not warming up" + (f"; top failures: {top}" if top else "")
                )
        return out

    def _stable_unhealthy(self, rel: float) -> list[str]:
        """Transactions whose stable runs mostly fail in this step: no baseline to judge by."""
        s, led = self.settings, self.ledger
        lo = math.floor(led.step_start / s.forecast_bucket_s)
        out = []
        for txn in self.transactions:
            buckets = [b for b in led.buckets.get(f"{txn}|stable", []) if b.idx >= lo]
            n, fails = sum(b.n for b in buckets), sum(b.fails for b in buckets)
            if not buckets:
                # Only the warm-up so far: judge stable on it.
                n, fails = led.warmup_runs(txn, "stable")
            if n >= min(5, s.min_samples) and fails >= s.stable_unhealthy_rate * n:
                top = led.top_messages(txn, "stable", k=2)
                why = ", ".join(f"{m!r} x{c}" for m, c in top)
                out.append(
                    f"{txn}: stable failed {fails} of {n} runs in this step"
                    + (f" ({why})" if why else "")
                )
        return out

    def _stable_health(self, rel: float) -> list[str]:
        """Stable far off its own history in the last minute: an event that is not the canary."""
        out = []
        s, led = self.settings, self.ledger
        for txn in self.transactions:
            ref = self.reference.get(txn)
            if ref is None or ref.get("err", -1.0) < 0:
                continue
            recent = led.recent(f"{txn}|stable", rel, s.health_window_s)
            n = sum(b.n for b in recent)
            if n < s.min_samples:
                continue
            fails, slow = sum(b.fails for b in recent), sum(b.slow for b in recent)
            allowed = min(1.0, 2.0 * ref["err_upper"] + 0.005)
            if binom_sf(fails, n, allowed) < s.health_alpha:
                out.append(
                    f"{txn}: stable success {100 * (1 - fails / n):.1f}% in the last "
                    f"{s.health_window_s:.0f} s vs {100 * (1 - ref['err']):.2f}% in its history: "
                    f"stable itself is degraded"
                )
            if binom_sf(slow, n, 0.15) < s.health_alpha:
                out.append(
                    f"{txn}: {100 * slow / n:.0f}% of stable runs in the last "
                    f"{s.health_window_s:.0f} s took longer than its historical p95 "
                    f"{ref['p95']:.0f} ms: stable itself is slow"
                )
        return out

    def _metrics(
        self, t: float, weight: int, tests: list[TestOutcome], failures: int
    ) -> dict[str, Any]:
        return {
            "engine": "sequential",
            "t": t,
            "weight": weight,
            "cumulative_canary_failures": failures,
            "error_budget": self.slo.error_budget,
            "tests": [
                {
                    "transaction": o.transaction,
                    "test": o.test,
                    "log_e": round(o.log_e, 4) if math.isfinite(o.log_e) else None,
                    "log_threshold": round(o.threshold, 4),
                    "window_start_s": o.start,
                    "shared": o.shared,
                }
                for o in tests
            ],
        }


@dataclass
class SequentialJudge:
    """The engine behind the stateless Judge protocol: sequential tests on one window only.

    It cannot accumulate evidence across steps (JudgeInput carries one window); the live
    coordinator should keep an AnalysisEngine's state instead (docs/analysis.md).
    """

    name: str = "sequential"
    settings: EngineSettings | None = None

    def decide(self, inp: JudgeInput) -> Decision:
        settings = self.settings or EngineSettings(
            max_holds=inp.max_holds, min_samples=inp.min_samples
        )
        results = sorted([*inp.canary, *inp.stable], key=lambda r: r.t)
        t0 = results[0].t if results else 0.0
        engine = AnalysisEngine(inp.slo, settings, list(inp.transactions), inp.history, t0=t0)
        engine.observe(results)
        window_failures = sum(1 for r in inp.canary if not r.ok)
        engine.failure_offset = max(0, inp.cumulative_canary_failures - window_failures)
        t = results[-1].t if results else t0
        return engine.decide(
            t, inp.weight, step_end=True, holds=inp.holds, final=inp.weight >= inp.max_weight
        )
