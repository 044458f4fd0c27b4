"""Reference judges for the benchmark: Flagger/Argo-style thresholds and a Kayenta-style judge.

Both judge the results of the current step window at its end (no interim checks), as those
systems do, and plug into the same replay loop as the engine through the StreamJudge protocol.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from canary.analysis.decision import Decision
from canary.analysis.engine import EngineSettings
from canary.analysis.slo import SLO
from canary.analysis.stats import mann_whitney_greater
from canary.probing.result import TransactionResult
from canary.replay import Recording

_HOLD = Decision("hold", ["interim: reference judges decide at step ends only"])


@dataclass
class _Window:
    """Results since the last step-end decision, by (version, transaction)."""

    results: dict[tuple[str, str], list[TransactionResult]] = field(
        default_factory=lambda: defaultdict(list)
    )

    def add(self, rs: Sequence[TransactionResult]) -> None:
        for r in rs:
            self.results[(r.version, r.transaction)].append(r)

    def clear(self) -> None:
        self.results = defaultdict(list)


@dataclass
class ThresholdReference:
    """Flagger / Argo Rollouts analysis: per-step success rate and p95 against fixed limits.

    Each step end is one check per transaction: canary success rate >= success_threshold and
    canary p95 <= latency_p95_ms. A failed check halts the rollout (hold); ``failure_limit``
    consecutive failed checks roll it back (Flagger's ``threshold``).
    """

    slo: SLO
    transactions: list[str]
    failure_limit: int = 2
    min_samples: int = 10
    window: _Window = field(default_factory=_Window)
    failed: int = 0

    def observe(self, results: Sequence[TransactionResult]) -> None:
        self.window.add(results)

    def decide(
        self, t: float, weight: int, *, step_end: bool, holds: int = 0, final: bool = False
    ) -> Decision:
        if not step_end:
            return _HOLD
        reasons = []
        for txn in self.transactions:
            rs = self.window.results.get(("canary", txn), [])
            if len(rs) < self.min_samples:
                continue
            success = 100.0 * sum(r.ok for r in rs) / len(rs)
            if success < self.slo.success_threshold:
                reasons.append(f"{txn}: success {success:.1f}% < {self.slo.success_threshold}%")
            if self.slo.latency_p95_ms is not None:
                p95 = float(np.percentile([r.latency_ms for r in rs], 95))
                if p95 > self.slo.latency_p95_ms:
                    reasons.append(f"{txn}: p95 {p95:.0f} ms > {self.slo.latency_p95_ms:.0f} ms")
        self.window.clear()
        if reasons:
            self.failed += 1
            if self.failed >= self.failure_limit:
                return Decision("rollback", reasons)
            return Decision("hold", reasons)
        self.failed = 0
        return Decision("promote" if final else "increase", ["checks passed"])


@dataclass
class KayentaReference:
    """Kayenta's NetflixACAJudge in outline: Mann-Whitney per metric, a score, two thresholds.

    Per transaction, two metrics: the error rate of 10-second buckets and the latency of each run,
    canary vs stable over the step window. A metric fails when a one-sided Mann-Whitney test at
    the 95% confidence of the ACA judge says the canary is higher and the effect is beyond the
    tolerance (ratio of means for latency, difference for error rate). Score = share of metrics
    passing; below ``marginal`` rolls back, between ``marginal`` and ``pass_score`` holds
    (Argo Rollouts treats that as inconclusive), ``max_holds`` inconclusive steps roll back.
    """

    slo: SLO
    transactions: list[str]
    pass_score: float = 95.0
    marginal: float = 75.0
    max_holds: int = 3
    bucket_s: float = 10.0
    confidence: float = 0.95
    window: _Window = field(default_factory=_Window)

    def observe(self, results: Sequence[TransactionResult]) -> None:
        self.window.add(results)

    def _buckets(self, rs: list[TransactionResult]) -> list[float]:
        by: dict[int, list[bool]] = defaultdict(list)
        for r in rs:
            by[math.floor(r.t / self.bucket_s)].append(r.ok)
        return [100.0 * (1.0 - sum(v) / len(v)) for v in by.values()]

    def decide(
        self, t: float, weight: int, *, step_end: bool, holds: int = 0, final: bool = False
    ) -> Decision:
        if not step_end:
            return _HOLD
        a = (1.0 - self.confidence) / 2.0  # two-sided 95%, like the ACA judge
        n_metrics, n_pass, reasons = 0, 0, []
        tol = 1.0 + self.slo.max_latency_increase_pct / 100.0
        for txn in self.transactions:
            c = self.window.results.get(("canary", txn), [])
            s = self.window.results.get(("stable", txn), [])
            if len(c) < 10 or len(s) < 10:
                continue
            ce, se = self._buckets(c), self._buckets(s)
            n_metrics += 1
            worse = np.mean(ce) - np.mean(se) > self.slo.max_error_rate_increase_pp
            if worse and mann_whitney_greater(ce, se) < a:
                reasons.append(f"{txn}: error rate high")
            else:
                n_pass += 1
            cl, sl = [r.latency_ms for r in c], [r.latency_ms for r in s]
            n_metrics += 1
            worse = np.mean(cl) > tol * np.mean(sl)
            if worse and mann_whitney_greater(cl, sl) < a:
                reasons.append(f"{txn}: latency high")
            else:
                n_pass += 1
        self.window.clear()
        if n_metrics == 0:
            return Decision("hold", ["no data"])
        score = 100.0 * n_pass / n_metrics
        head = f"score {score:.0f}"
        if score < self.marginal:
            return Decision("rollback", [head, *reasons])
        if score < self.pass_score:
            if holds >= self.max_holds:
                return Decision("rollback", [head + " (marginal too long)", *reasons])
            return Decision("hold", [head + " (marginal)", *reasons])
        return Decision("promote" if final else "increase", [head])


def threshold_factory(rec: Recording, settings: EngineSettings) -> ThresholdReference:
    return ThresholdReference(rec.slo, list(rec.transactions))


def kayenta_factory(rec: Recording, settings: EngineSettings) -> KayentaReference:
    return KayentaReference(rec.slo, list(rec.transactions))
