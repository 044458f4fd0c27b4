"""The sequential analysis engine: results in time order in, decisions out, state as plain JSON.

One engine follows one rollout. ``observe`` folds results into running sufficient statistics
(O(1) per result); ``decide`` is cheap enough to call every few seconds, so a rollback can come
at any moment, and the same code runs live (state persisted between Celery tasks through
``to_state``/``from_state``) and in replay. The method is described in docs/analysis.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from canary.analysis.decision import Decision, JudgeInput
from canary.analysis.sequential import (
    Moments,
    bernoulli_log_e_vec,
    mean_difference,
    mean_difference_vec,
    normal_mixture_log_e_vec,
    normal_mixture_lower,
    rate_difference,
    rate_difference_vec,
)
from canary.analysis.slo import SLO
from canary.analysis.stats import binom_sf, wilson
from canary.errors import ConfigError
from canary.probing.result import TransactionResult

STATE_VERSION = 1
VERSIONS = ("canary", "stable")
# Indexes into a series' running totals (a list so that the state stays plain JSON).
N, FAIL, S1, S2, TAIL_N, TAIL, OVER_SLO = range(7)
_ZEROS = [0.0] * 7
# Buckets kept per series: enough for the forecast window and the stable-health window.
MAX_BUCKETS = 64
# Latencies are clamped before the log so that a 0 ms result (a broken clock) cannot give -inf.
MIN_LATENCY_MS = 0.1
ALL = "all transactions"


@dataclass(frozen=True)
class EngineSettings:
    """The knobs of the engine; every default is meant to be left alone (docs/analysis.md)."""

    alpha: float = 0.02  # chance of rolling back a canary no worse than tolerated, per rollout
    check_interval_s: float = 5.0  # how often interim checks run (live and in replay)
    restart_s: float = 60.0  # a fresh test starts every this many seconds (late onsets)
    max_restarts: int = 30
    restart_share: float = 0.5  # of the evidence's prior weight, on the restarted tests
    min_samples: int = 10  # per transaction and version in a step, else "too little evidence"
    min_window_n: int = 30  # runs per version before a normal-approximation test may count
    max_holds: int = 3
    on_max_holds: Literal["rollback", "increase"] = "rollback"
    suspect_fraction: float = 0.5  # hold when a test is this far (log scale) to rejection
    health_window_s: float = 30.0
    health_alpha: float = 0.001
    forecast: bool = True
    forecast_bucket_s: float = 15.0
    forecast_horizon_s: float = 240.0
    forecast_min_buckets: int = 8
    forecast_window: int = 24
    predictive_probability: float = 0.9
    trend_t: float = 2.5
    forecast_tolerance: bool = True  # also forecast the latency ratio against the tolerance
    tolerance_horizon_s: float = 120.0
    tolerance_trend_z: float = 4.5
    pooled_alpha_share: float = 0.7  # of alpha, on the tests pooled over all transactions
    tau_error: float = 0.02  # effect sizes the mixtures are tuned for: 2 pp of errors,
    tau_latency: float = 0.2  # 20% of latency (log scale)
    latency_floor_sd: float = 0.02
    # "off": a step end never holds only because a window's estimate is beyond the tolerance;
    # "estimate" holds then (Kayenta-like caution that, through max_holds, rolls back about half
    # of the canaries that are worse than stable but within tolerance: docs/analysis.md).
    lean_rule: Literal["off", "estimate", "bound"] = "off"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> EngineSettings:
        """Missing keys take defaults; unknown keys and bad values are a ConfigError."""
        d = dict(d or {})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(
                f"analysis: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        kw: dict[str, Any] = {}
        for name, value in d.items():
            default = getattr(cls, name)
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise ConfigError(f"analysis.{name}: must be true or false")
                kw[name] = value
            elif isinstance(default, int):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ConfigError(f"analysis.{name}: must be an integer")
                kw[name] = value
            elif isinstance(default, float):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ConfigError(f"analysis.{name}: must be a number")
                kw[name] = float(value)
            else:
                kw[name] = value
        settings = cls(**kw)
        settings.validate()
        return settings

    def validate(self) -> None:
        problems = []
        if not 0.0 < self.alpha < 0.5:
            problems.append("alpha: must be in (0, 0.5)")
        for name in ("check_interval_s", "restart_s", "health_window_s", "forecast_bucket_s"):
            if getattr(self, name) <= 0:
                problems.append(f"{name}: must be > 0")
        if self.forecast_horizon_s < 0:
            problems.append("forecast_horizon_s: must be >= 0")
        for name in ("max_restarts", "max_holds"):
            if getattr(self, name) < 0:
                problems.append(f"{name}: must be >= 0")
        for name in ("min_samples", "min_window_n"):
            if getattr(self, name) < 1:
                problems.append(f"{name}: must be >= 1")
        if self.forecast_min_buckets < 4 or self.forecast_window < self.forecast_min_buckets:
            problems.append("forecast_min_buckets: must be >= 4 and <= forecast_window")
        if self.lean_rule not in ("off", "estimate", "bound"):
            problems.append("lean_rule: must be off, estimate or bound")
        if not 0.0 <= self.pooled_alpha_share < 1.0:
            problems.append("pooled_alpha_share: must be in [0, 1)")
        if self.tolerance_horizon_s < 0:
            problems.append("tolerance_horizon_s: must be >= 0")
        if self.on_max_holds not in ("rollback", "increase"):
            problems.append("on_max_holds: must be rollback or increase")
        if not 0.0 < self.restart_share < 1.0:
            problems.append("restart_share: must be in (0, 1)")
        if not 0.0 < self.suspect_fraction <= 1.0:
            problems.append("suspect_fraction: must be in (0, 1]")
        if not 0.5 <= self.predictive_probability < 1.0:
            problems.append("predictive_probability: must be in [0.5, 1)")
        if not 0.0 < self.health_alpha < 0.5:
            problems.append("health_alpha: must be in (0, 0.5)")
        for name in (
            "tau_error",
            "tau_latency",
            "latency_floor_sd",
            "trend_t",
            "tolerance_trend_z",
        ):
            if getattr(self, name) <= 0:
                problems.append(f"{name}: must be > 0")
        if problems:
            raise ConfigError("\n".join(f"analysis.{p}" for p in problems))


@dataclass
class TestOutcome:
    """One sequential test of one transaction (or ALL): combined evidence and its best window."""

    transaction: str
    test: str
    log_e: float
    threshold: float  # log(1/alpha share): reject at or above
    start: float  # seconds after t0 where the most telling window starts
    shared: bool = False  # an absolute breach that stable shows too
    lean: bool = False  # looks beyond tolerance and is surely worse than stable: do not add traffic


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
        self.transactions: list[str] = list(dict.fromkeys(transactions))
        self.reference: dict[str, dict[str, float]] = _reference(history, self.transactions)
        self.cum: dict[str, list[float]] = {}
        self.snaps: list[dict[str, list[float]]] = [{}]
        self.step_mark: dict[str, float] = {}
        self.buckets: dict[str, list[list[Any]]] = {}
        self.warmup: dict[str, list[float]] = {}
        self.last_t = -math.inf
        self.forecast_checked = -1
        self.failure_offset = 0
        self._snap_cache: dict[str, npt.NDArray[np.float64]] = {}
        self._snap_len = -1
        for txn in self.transactions:
            self._ensure(txn)

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
            "cum": self.cum,
            "snaps": self.snaps,
            "step_mark": self.step_mark,
            "buckets": self.buckets,
            "warmup": self.warmup,
            "last_t": self.last_t if math.isfinite(self.last_t) else None,
            "forecast_checked": self.forecast_checked,
            "failure_offset": self.failure_offset,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> AnalysisEngine:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unknown engine state version {state.get('version')!r}")
        eng = cls(
            SLO.from_dict(state["slo"]),
            EngineSettings.from_dict(state["settings"]),
            state["transactions"],
            t0=state["t0"],
        )
        eng.reference = {k: dict(v) for k, v in state["reference"].items()}
        eng.cum = {k: list(v) for k, v in state["cum"].items()}
        eng.snaps = [{k: list(v) for k, v in s.items()} for s in state["snaps"]]
        eng.step_mark = dict(state["step_mark"])
        eng.buckets = {k: [list(b) for b in v] for k, v in state["buckets"].items()}
        eng.warmup = {k: list(v) for k, v in state["warmup"].items()}
        last = state.get("last_t")
        eng.last_t = -math.inf if last is None else float(last)
        eng.forecast_checked = int(state["forecast_checked"])
        eng.failure_offset = int(state.get("failure_offset", 0))
        return eng

    # --- observing -----------------------------------------------------------------------------

    def _ensure(self, txn: str) -> None:
        if f"{txn}|canary" in self.cum:
            return
        if txn not in self.transactions:
            self.transactions.append(txn)
        for v in VERSIONS:
            key = f"{txn}|{v}"
            self.cum[key] = list(_ZEROS)
            self.buckets[key] = []
            self.step_mark.setdefault(key, 0.0)
        self.warmup.setdefault(txn, [])

    def observe(self, results: Iterable[TransactionResult]) -> None:
        """Fold results (in time order, any mix of versions) into the running statistics."""
        s = self.settings
        tol = 1.0 + self.slo.max_latency_increase_pct / 100.0
        slo_ms = self.slo.latency_p95_ms
        for r in results:
            if r.version not in VERSIONS:
                continue
            rel = r.t - self.t0
            self._snapshot_until(rel)
            self.last_t = max(self.last_t, r.t)
            txn = r.transaction
            key = f"{txn}|{r.version}"
            c = self.cum.get(key)
            if c is None:
                self._ensure(txn)
                c = self.cum[key]
            lat = max(r.latency_ms, MIN_LATENCY_MS)
            y = math.log(lat)
            c[N] += 1.0
            c[S1] += y
            c[S2] += y * y
            if not r.ok:
                c[FAIL] += 1.0
            if slo_ms is not None and lat > slo_ms:
                c[OVER_SLO] += 1.0
            ref = self.reference.get(txn)
            if ref is None:
                # No history: the tail threshold comes from stable's first runs, and tail
                # counting starts only once it is fixed, so it never depends on the data it tests.
                if r.version == "stable":
                    w = self.warmup[txn]
                    w.append(lat)
                    if len(w) >= s.min_window_n:
                        self.reference[txn] = {
                            "p95": float(np.percentile(w, 95)),
                            "logmean": float(np.mean(np.log(w))),
                            "err": -1.0,
                        }
                        w.clear()
            else:
                limit = ref["p95"] * tol
                c[TAIL_N] += 1.0
                if r.version == "canary":
                    if lat > limit:
                        c[TAIL] += 1.0
                elif lat > limit / tol:
                    c[TAIL] += 1.0
            b_idx = math.floor(rel / s.forecast_bucket_s)
            series = self.buckets[key]
            if not series or series[-1][0] != b_idx:
                if series:
                    _close(series[-1])
                series.append([b_idx, 0, 0, 0, None, [], 0.0])
                if len(series) > MAX_BUCKETS:
                    del series[0]
            b = series[-1]
            b[1] += 1
            if not r.ok:
                b[2] += 1
            if ref is not None and lat > ref["p95"]:
                b[3] += 1
            b[5].append(lat)
            b[6] += y

    def _snapshot_until(self, rel: float) -> None:
        """Take the restart snapshots whose time has come (before the result at ``rel``)."""
        s = self.settings
        while len(self.snaps) <= s.max_restarts and rel >= len(self.snaps) * s.restart_s:
            self.snaps.append({k: list(v) for k, v in self.cum.items()})

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
        self._snapshot_until(t - self.t0)
        tests = self._tests()
        # Strongest evidence first, so that the first reason is the one that matters.
        tests.sort(key=lambda o: o.threshold - o.log_e)
        suspect = self.settings.suspect_fraction
        for o in tests:
            if o.log_e >= suspect * o.threshold:
                o.shared = self._is_shared(o)
        alerts: list[str] = []
        rollback: list[str] = []
        hold: list[str] = []
        for o in tests:
            if o.log_e >= o.threshold:
                # A breach stable shows too is an alert, not a hold: the stable-health check
                # already holds while stable is unhealthy, and the breach's evidence outlives
                # the incident by many minutes.
                (alerts if o.shared else rollback).append(self._describe(o))
        failures = self.failure_offset + int(
            sum(self.cum[f"{x}|canary"][FAIL] for x in self.transactions)
        )
        if failures > self.slo.error_budget:
            msg = (
                f"error budget spent: {failures} failed canary transactions so far, "
                f"budget {self.slo.error_budget}"
            )
            alerts.append(msg)
            if self.slo.rollback_on_error_budget:
                rollback.append(msg + " (rollback_on_error_budget is set)")
        metrics = self._metrics(t, weight, tests, failures)
        if rollback:
            return Decision("rollback", rollback, alerts=alerts, metrics=metrics)
        predictive = self._predict(t)
        if predictive:
            metrics["forecast"] = predictive[1]
            return Decision(
                "rollback", [predictive[0]], predictive=True, alerts=alerts, metrics=metrics
            )
        if not step_end:
            metrics["interim"] = True
            return Decision(
                "hold", ["interim check: no regression found"], alerts=alerts, metrics=metrics
            )

        hold += self._evidence_holds()
        hold += [
            f"{self._describe(o)} (not yet conclusive; holding for more evidence)"
            for o in tests
            if not o.shared and suspect * o.threshold <= o.log_e < o.threshold
        ]
        lean = [
            f"{self._describe(o)} (looks beyond tolerance and worse than stable; "
            f"holding the weight until it is certain)"
            for o in tests
            if o.lean and o.log_e < suspect * o.threshold
        ]
        hold += lean
        for msg in self._stable_health(t):
            hold.append(f"{msg}; holding: not the canary's doing")
            alerts.append(msg)
        if hold:
            if holds >= self.settings.max_holds:
                head = (
                    f"held {holds} times at weight {weight}% (max {self.settings.max_holds}) "
                    f"without enough evidence that the canary is good"
                )
                if self.settings.on_max_holds == "rollback":
                    return Decision(
                        "rollback",
                        [head + "; rolling back to fail safe", *hold],
                        alerts=alerts,
                        metrics=metrics,
                    )
                alerts.append(head)
                self._mark_step()
                return Decision(
                    "promote" if final else "increase",
                    [head + "; moving on as configured (on_max_holds: increase)", *hold],
                    alerts=alerts,
                    metrics=metrics,
                )
            return Decision("hold", hold, alerts=alerts, metrics=metrics)
        self._mark_step()
        head = (
            f"all checks within tolerance at weight {weight}% "
            f"({'final step: promoting' if final else 'increasing'})"
        )
        return Decision(
            "promote" if final else "increase",
            [head, *self._summaries()],
            alerts=alerts,
            metrics=metrics,
        )

    def _mark_step(self) -> None:
        self.step_mark = {k: v[N] for k, v in self.cum.items()}

    def _window(self, key: str, j: int) -> Moments:
        c = self.cum[key]
        base = self.snaps[j].get(key, _ZEROS)
        return Moments(c[N] - base[N], c[FAIL] - base[FAIL], c[S1] - base[S1], c[S2] - base[S2])

    def _tail_window(self, key: str, j: int) -> Moments:
        c = self.cum[key]
        base = self.snaps[j].get(key, _ZEROS)
        return Moments(c[TAIL_N] - base[TAIL_N], c[TAIL] - base[TAIL])

    def _over_window(self, key: str, j: int) -> Moments:
        c = self.cum[key]
        base = self.snaps[j].get(key, _ZEROS)
        return Moments(c[N] - base[N], c[OVER_SLO] - base[OVER_SLO])

    def _log_weights(self) -> list[float]:
        # Part of the prior on "since the start", the rest spread over the planned restarts: a
        # weighted average of e-processes started at different times is itself an e-process.
        r = max(1, self.settings.max_restarts)
        share = self.settings.restart_share
        return [math.log(1.0 - share)] + [math.log(share / r)] * (len(self.snaps) - 1)

    def _snap_array(self, key: str) -> npt.NDArray[np.float64]:
        """The restart snapshots of one series as a (windows x 7) array, cached."""
        if self._snap_len != len(self.snaps):
            self._snap_cache = {}
            self._snap_len = len(self.snaps)
        arr = self._snap_cache.get(key)
        if arr is None:
            arr = np.asarray([s.get(key, _ZEROS) for s in self.snaps], dtype=float)
            self._snap_cache[key] = arr
        return arr

    def _tests(self) -> list[TestOutcome]:
        """Every sequential test, with evidence combined over the restart windows."""
        s, slo = self.settings, self.slo
        txns = self.transactions
        pooled = len(txns) >= 2
        per = 4 + (slo.latency_p95_ms is not None)
        # Bonferroni over the tests, with a larger share of alpha for the three pooled tests:
        # they see every transaction's data, so a regression of all of them (a drift above all)
        # reaches their bar first; one broken transaction is a large effect its own tests find
        # quickly even at a smaller share.
        txn_threshold = pooled_threshold = math.log(max(1, per * len(txns)) / s.alpha)
        if pooled:
            share = s.pooled_alpha_share
            if share > 0:
                txn_threshold = math.log(per * len(txns) / ((1.0 - share) * s.alpha))
                pooled_threshold = math.log(3.0 / (share * s.alpha))
            else:
                txn_threshold = pooled_threshold = math.log((per * len(txns) + 3) / s.alpha)
        logw = np.asarray(self._log_weights())
        minn = s.min_window_n
        err_margin = slo.max_error_rate_increase_pp / 100.0
        lat_margin = math.log1p(slo.max_latency_increase_pct / 100.0)
        p_fail = 1.0 - slo.success_threshold / 100.0
        out: list[TestOutcome] = []

        def add(
            txn: str,
            name: str,
            le: npt.NDArray[np.float64],
            valid: Any,
            lean: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float, float]
            | None = None,
        ) -> None:
            threshold = pooled_threshold if txn == ALL else txn_threshold
            score = np.where(valid, logw + le, -np.inf)
            if not np.isfinite(score).any():
                return
            top = float(score.max())
            total = top + math.log(float(np.exp(score - top).sum()))
            best = int(np.argmax(score))
            leaning = False
            if lean is not None and s.lean_rule != "off":
                # Some window whose estimate is beyond the tolerance while the canary is, with
                # the full confidence of a rollback, worse than stable at all.
                d, v, margin, tau = lean
                zero = normal_mixture_log_e_vec(d, v, 0.0, tau)
                worse = valid & (logw + zero >= threshold)
                if s.lean_rule == "estimate":
                    leaning = bool(np.any(worse & (d > margin)))
                else:
                    # Surely worse than stable, and not yet surely within the tolerance.
                    within = normal_mixture_log_e_vec(-d, v, -margin, tau)
                    leaning = bool(np.any(worse & (logw + within < threshold)))
            out.append(TestOutcome(txn, name, total, threshold, best * s.restart_s, lean=leaning))

        pooled_err: list[tuple[Any, Any]] = []
        pooled_lat: list[tuple[Any, Any]] = []
        pooled_ok = np.ones(len(self.snaps), dtype=bool)
        all_n = np.zeros(len(self.snaps))
        all_fail = np.zeros(len(self.snaps))
        for txn in txns:
            kc, ks = f"{txn}|canary", f"{txn}|stable"
            c = np.asarray(self.cum[kc]) - self._snap_array(kc)
            st = np.asarray(self.cum[ks]) - self._snap_array(ks)
            has = c[:, N] > 0
            all_n += c[:, N]
            all_fail += c[:, FAIL]
            if p_fail > 0:
                add(txn, "success objective", bernoulli_log_e_vec(c[:, FAIL], c[:, N], p_fail), has)
            if slo.latency_p95_ms is not None:
                add(
                    txn,
                    "latency objective",
                    bernoulli_log_e_vec(c[:, OVER_SLO], c[:, N], 0.05),
                    has,
                )
            enough = (c[:, N] >= minn) & (st[:, N] >= minn)
            pooled_ok &= enough
            d, v = rate_difference_vec(c[:, N], c[:, FAIL], st[:, N], st[:, FAIL])
            pooled_err.append((d, v))
            le = normal_mixture_log_e_vec(d, v, err_margin, s.tau_error)
            add(txn, "errors", le, enough, (d, v, err_margin, s.tau_error))
            d, v = mean_difference_vec(c[:, [N, S1, S2]], st[:, [N, S1, S2]], s.latency_floor_sd)
            pooled_lat.append((d, v))
            le = normal_mixture_log_e_vec(d, v, lat_margin, s.tau_latency)
            add(txn, "latency", le, enough, (d, v, lat_margin, s.tau_latency))
            tail_ok = (c[:, TAIL_N] >= minn) & (st[:, TAIL_N] >= minn)
            if tail_ok.any():
                d, v = rate_difference_vec(c[:, TAIL_N], c[:, TAIL], st[:, TAIL_N], st[:, TAIL])
                add(txn, "tail latency", normal_mixture_log_e_vec(d, v, 0.0, s.tau_error), tail_ok)
        # Pooled over transactions (equal weights): a small regression of every transaction
        # shows sooner in the average than in any one of them.
        if pooled and p_fail > 0:
            # The objective is a share of all transactions, so it is also tested pooled.
            le = bernoulli_log_e_vec(all_fail, all_n, p_fail)
            add(ALL, "success objective", le, all_n > 0)
        if pooled and pooled_ok.any():
            k = float(len(txns))
            for name, parts, margin, tau in (
                ("errors", pooled_err, err_margin, s.tau_error),
                ("latency", pooled_lat, lat_margin, s.tau_latency),
            ):
                d = sum(p[0] for p in parts) / k
                v = sum(p[1] for p in parts) / (k * k)
                le = normal_mixture_log_e_vec(d, v, margin, tau)
                add(ALL, name, le, pooled_ok, (d, v, margin, tau))
        return out

    def _describe(self, o: TestOutcome) -> str:
        """The operator's sentence for a test, with the numbers of its most telling window."""
        s, slo = self.settings, self.slo
        j = round(o.start / s.restart_s)
        since = f" since t={o.start:.0f}s" if j else ""
        alpha = math.exp(-o.threshold)
        e = _fmt_e(o.log_e)
        txns = self.transactions if o.transaction == ALL else [o.transaction]
        c = _sum(self._window(f"{x}|canary", j) for x in txns)
        st = _sum(self._window(f"{x}|stable", j) for x in txns)
        who = o.transaction
        if o.test == "errors":
            d, v = rate_difference(c, st)
            lower = normal_mixture_lower(d, v, alpha, s.tau_error)
            return (
                f"{who}: canary errors {100 * c.rate:.2f}% ({int(c.events)}/{int(c.n)}) vs "
                f"stable {100 * st.rate:.2f}% ({int(st.events)}/{int(st.n)}){since}: "
                f"{100 * d:+.2f} pp, at least {_fmt_pp(lower)} with confidence "
                f"(tolerance {slo.max_error_rate_increase_pp:g} pp; e={e})"
            )
        if o.test == "latency":
            d, v = mean_difference(c, st, s.latency_floor_sd)
            lower = normal_mixture_lower(d, v, alpha, s.tau_latency)
            return (
                f"{who}: canary typical latency {math.exp(c.mean):.0f} ms vs stable "
                f"{math.exp(st.mean):.0f} ms{since}: {_fmt_pct(d)}, at least {_fmt_pct(lower)} "
                f"with confidence (tolerance {slo.max_latency_increase_pct:g}%; e={e})"
            )
        if o.test == "tail latency":
            tc = self._tail_window(f"{who}|canary", j)
            ts = self._tail_window(f"{who}|stable", j)
            ref = self.reference.get(who, {}).get("p95", math.nan)
            lim = ref * (1.0 + slo.max_latency_increase_pct / 100.0)
            return (
                f"{who}: {100 * tc.rate:.1f}% of canary runs took longer than {lim:.0f} ms vs "
                f"{100 * ts.rate:.1f}% of stable runs longer than {ref:.0f} ms{since}: canary "
                f"p95 is more than {slo.max_latency_increase_pct:g}% above stable's (e={e})"
            )
        if o.test == "success objective":
            tail = "; stable is as bad: not the canary's doing" if o.shared else ""
            return (
                f"{who}: canary success {100 * (1 - c.rate):.2f}% ({int(c.n - c.events)}/"
                f"{int(c.n)}){since} is below the {slo.success_threshold:g}% objective "
                f"(stable {100 * (1 - st.rate):.2f}%; e={e}){tail}"
            )
        oc = self._over_window(f"{who}|canary", j)
        os_ = self._over_window(f"{who}|stable", j)
        tail = "; stable is as slow: not the canary's doing" if o.shared else ""
        return (
            f"{who}: {100 * oc.rate:.1f}% of canary runs took longer than "
            f"{slo.latency_p95_ms or 0:.0f} ms{since}: its p95 is above the objective "
            f"(stable {100 * (os_.rate if os_.n else 0.0):.1f}%; e={e}){tail}"
        )

    def _is_shared(self, o: TestOutcome) -> bool:
        """An absolute breach the canary is not to blame for: stable shows it too."""
        if o.test not in ("success objective", "latency objective"):
            return False
        j = round(o.start / self.settings.restart_s)
        txns = self.transactions if o.transaction == ALL else [o.transaction]
        c = _sum(self._window(f"{x}|canary", j) for x in txns)
        st = _sum(self._window(f"{x}|stable", j) for x in txns)
        if o.test == "success objective":
            p_fail = 1.0 - self.slo.success_threshold / 100.0
            stable_rate = st.rate if st.n else 0.0
            margin = self.slo.max_error_rate_increase_pp / 100.0
            return stable_rate >= p_fail - 1e-9 or (c.rate - stable_rate) <= margin
        if o.test == "latency objective":
            os_ = self._over_window(f"{o.transaction}|stable", j)
            return os_.n > 0 and os_.rate >= 0.05
        return False

    def _start(self, j: int) -> float:
        return j * self.settings.restart_s

    def _evidence_holds(self) -> list[str]:
        out = []
        need = self.settings.min_samples
        for txn in self.transactions:
            nc = int(self.cum[f"{txn}|canary"][N] - self.step_mark.get(f"{txn}|canary", 0.0))
            ns = int(self.cum[f"{txn}|stable"][N] - self.step_mark.get(f"{txn}|stable", 0.0))
            if nc < need or ns < need:
                out.append(
                    f"{txn}: too little evidence: {nc} canary and {ns} stable runs in this step, "
                    f"need at least {need} of each"
                )
        return out

    def _recent(self, key: str, t: float, span_s: float) -> list[list[Any]]:
        lo = math.floor((t - self.t0 - span_s) / self.settings.forecast_bucket_s)
        return [b for b in self.buckets.get(key, []) if b[0] >= lo]

    def _stable_health(self, t: float) -> list[str]:
        """Stable far off its own history in the last minute: an event that is not the canary."""
        out = []
        s = self.settings
        for txn in self.transactions:
            ref = self.reference.get(txn)
            if ref is None or ref.get("err", -1.0) < 0:
                continue
            recent = self._recent(f"{txn}|stable", t, s.health_window_s)
            n = sum(b[1] for b in recent)
            if n < s.min_samples:
                continue
            fails, slow = sum(b[2] for b in recent), sum(b[3] for b in recent)
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

    # --- forecasting ---------------------------------------------------------------------------

    def _predict(self, t: float) -> tuple[str, dict[str, Any]] | None:
        """A forecast breach of an absolute objective or of the latency tolerance, checked once
        per closed bucket."""
        s = self.settings
        if not s.forecast or s.forecast_horizon_s <= 0:
            return None
        closed = math.floor((t - self.t0) / s.forecast_bucket_s) - 1
        if closed <= self.forecast_checked:
            return None
        self.forecast_checked = closed
        h = max(1, math.ceil(s.forecast_horizon_s / s.forecast_bucket_s))
        for txn in self.transactions:
            found = self._predict_metric(txn, closed, h, "p95")
            if found is None:
                found = self._predict_metric(txn, closed, h, "errors")
            if found is not None:
                return found
        if s.forecast_tolerance and s.tolerance_horizon_s > 0:
            ht = max(1, math.ceil(s.tolerance_horizon_s / s.forecast_bucket_s))
            cols = self._ratio_columns(closed)
            scopes = [(ALL, list(cols.values()))] if len(cols) >= 2 else []
            scopes += [(txn, [col]) for txn, col in cols.items()]
            for scope, part in scopes:
                values, variances = _pool(part)
                found = self._predict_tolerance(scope, values, variances, ht)
                if found is not None:
                    return found
        return None

    def _ratio_columns(self, closed: int) -> dict[str, list[tuple[float, float] | None]]:
        """Per transaction and bucket up to ``closed``: canary-minus-stable mean log latency and
        its sampling variance (each series' overall log-latency spread over the bucket's runs);
        None where a bucket has too few runs."""
        s = self.settings
        w = s.forecast_window
        floor = s.latency_floor_sd**2
        out: dict[str, list[tuple[float, float] | None]] = {}
        for txn in self.transactions:
            parts = []
            for v in VERSIONS:
                key = f"{txn}|{v}"
                series = self.buckets.get(key, [])
                parts.append(
                    (
                        _series(series, closed, w, "logmean"),
                        _series(series, closed, w, "count"),
                        max(self._window(key, 0).var, floor),
                    )
                )
            (cm, cn, cv), (sm, sn, sv) = parts
            out[txn] = [
                None
                if a is None or b is None or na is None or nb is None
                else (a - b, cv / na + sv / nb)
                for a, na, b, nb in zip(cm, cn, sm, sn, strict=True)
            ]
        return out

    def _predict_tolerance(
        self, scope: str, values: list[float], variances: list[float], h: int
    ) -> tuple[str, dict[str, Any]] | None:
        """A forecast passing of the latency tolerance by ``scope``'s canary/stable ratio."""
        s, slo = self.settings, self.slo
        if len(values) < s.forecast_min_buckets:
            return None
        target = math.log1p(slo.max_latency_increase_pct / 100.0)
        from canary.analysis.forecast import forecast_breach, weighted_trend

        # The screen: a rise of the ratio that the buckets' own sampling noise cannot explain
        # (z >= 4.5 is a one-sided chance of 3e-6 per look), steep enough for a straight line
        # to reach the tolerance well within the horizon. A canary worse than stable but
        # steady, however close to the tolerance, has no such trend.
        slope, z, last_fit = weighted_trend(values, variances)
        if slope <= 0 or z < s.tolerance_trend_z:
            return None
        if last_fit + 1.5 * h * slope < target:
            return None
        fc = forecast_breach(values, target, h)
        if fc.probability < s.predictive_probability:
            return None
        within = (fc.steps_to_cross or h) * s.forecast_bucket_s
        per_min = slope * 60.0 / s.forecast_bucket_s
        tol = f"{slo.max_latency_increase_pct:g}%"
        rising = f"rising {100 * math.expm1(per_min):.1f}%/min (trend z={z:.1f})"
        if last_fit >= target:
            # Past the tolerance by the trend's fit, not yet by the comparison's lower bound.
            reason = (
                f"{scope}: canary latency about {_fmt_pct(last_fit)} over stable, past the {tol} "
                f"tolerance, and {rising}; forecast to stay past it (p={fc.probability:.2f})"
            )
        else:
            reason = (
                f"{scope}: canary latency forecast to pass the {tol} tolerance over stable "
                f"within {within:.0f} s (p={fc.probability:.2f}); now about "
                f"{_fmt_pct(last_fit)} and {rising}"
            )
        return reason, {
            "transaction": scope,
            "metric": "latency_vs_stable",
            "threshold": target,
            "probability": fc.probability,
            "within_s": within,
            "trend_z": z,
            "mean": fc.mean,
            "sd": fc.sd,
        }

    def _predict_metric(
        self, txn: str, closed: int, h: int, metric: str
    ) -> tuple[str, dict[str, Any]] | None:
        s, slo = self.settings, self.slo
        if metric == "p95":
            if slo.latency_p95_ms is None:
                return None
            threshold = slo.latency_p95_ms
        else:
            threshold = 100.0 - slo.success_threshold
            if threshold <= 0:
                return None
        kc, ks = f"{txn}|canary", f"{txn}|stable"
        w = s.forecast_window
        if metric == "p95":
            # A bucket's p95 from a few dozen runs is too noisy to trend. The canary's p95 is
            # modelled as stable's p95 times the canary/stable latency ratio, whose log (a
            # difference of mean log latencies) is several times less noisy.
            cm = _series(self.buckets.get(kc, []), closed, w, "logmean")
            sm = _series(self.buckets.get(ks, []), closed, w, "logmean")
            sp = _series(self.buckets.get(ks, []), closed, w, "p95")
            rows = [
                (c, b, p)
                for c, b, p in zip(cm, sm, sp, strict=True)
                if c is not None and b is not None and p is not None
            ]
            if len(rows) < s.forecast_min_buckets:
                return None
            values = [c - b for c, b, _ in rows]
            ref = self.reference.get(txn, {})
            if "logmean" in ref:
                # The reference p95 (hundreds of runs) moved by how far stable's typical latency
                # has moved since: far steadier than the p95 of a few 15-second buckets, which
                # is also biased low.
                recent = [b for _, b, _ in rows[-16:]]
                stable_p95 = ref["p95"] * math.exp(float(np.mean(recent)) - ref["logmean"])
            else:
                stable_p95 = float(np.median([p for _, _, p in rows[-16:]]))
            if stable_p95 <= 0 or stable_p95 >= threshold:
                return None
            target = math.log(threshold / stable_p95)
            stable_level = [p for _, _, p in rows]
        else:
            canary = _series(self.buckets.get(kc, []), closed, w, metric)
            stable = _series(self.buckets.get(ks, []), closed, w, metric)
            pairs = [
                (c, b)
                for c, b in zip(canary, stable, strict=True)
                if c is not None and b is not None
            ]
            if len(pairs) < s.forecast_min_buckets:
                return None
            values = [c for c, _ in pairs]
            target = threshold
            stable_level = [b for _, b in pairs]
        from canary.analysis.forecast import forecast_breach, trend

        # The trend must be real: the series rising significantly, the canary significantly
        # worse than stable (which rules out load that slows both), stable not heading for the
        # objective itself, and the straight line reaching the objective within the horizon.
        lvl = trend(values)
        if lvl.slope <= 0 or lvl.t_stat < s.trend_t:
            return None
        if lvl.last_fit + 1.5 * h * lvl.slope < target:
            return None
        base = trend(stable_level)
        if base.last_fit + h * max(base.slope, 0.0) >= threshold:
            return None
        divergence = self._divergence(txn, metric)
        if divergence < math.log(max(1, 4 * len(self.transactions)) / s.alpha):
            return None
        fc = forecast_breach(values, target, h)
        if fc.probability < s.predictive_probability:
            return None
        within = (fc.steps_to_cross or h) * s.forecast_bucket_s
        per_min = lvl.slope * 60.0 / s.forecast_bucket_s
        if metric == "p95":
            now_ms = stable_p95 * math.exp(lvl.last_fit)
            reason = (
                f"{txn} p95 forecast to exceed {threshold:.0f} ms within {within:.0f} s "
                f"(p={fc.probability:.2f}); canary p95 now about {now_ms:.0f} ms "
                f"({_fmt_pct(lvl.last_fit)} over stable's {stable_p95:.0f} ms) and rising "
                f"{100 * math.expm1(per_min):.1f}%/min (trend t={lvl.t_stat:.1f}) while stable "
                f"is not"
            )
        else:
            reason = (
                f"{txn} error rate forecast to exceed {threshold:.2g}% within {within:.0f} s "
                f"(p={fc.probability:.2f}); canary errors now {lvl.last_fit:.2f}% and rising "
                f"{per_min:.2f} pp/min (trend t={lvl.t_stat:.1f}) while stable is not"
            )
        return reason, {
            "transaction": txn,
            "metric": metric,
            "threshold": threshold,
            "probability": fc.probability,
            "within_s": within,
            "trend_t": lvl.t_stat,
            "divergence_log_e": divergence,
            "mean": fc.mean,
            "sd": fc.sd,
        }

    def _divergence(self, txn: str, metric: str) -> float:
        """Best log e-value, over restart windows, that the canary is pulling away from stable.

        The same sequential test as the comparison, with a null margin of half the tolerance
        instead of the whole: evidence that the canary is clearly worse, not yet that it is out
        of bounds.
        """
        s = self.settings
        kc, ks = f"{txn}|canary", f"{txn}|stable"
        c = np.asarray(self.cum[kc]) - self._snap_array(kc)
        st = np.asarray(self.cum[ks]) - self._snap_array(ks)
        ok = (c[:, N] >= s.min_window_n) & (st[:, N] >= s.min_window_n)
        if not ok.any():
            return -math.inf
        # Half the tolerance: a canary slightly worse but well within it (which a long enough
        # rollout would show to be "worse than stable" at a margin of zero) never qualifies.
        if metric == "p95":
            margin = 0.5 * math.log1p(self.slo.max_latency_increase_pct / 100.0)
            d, v = mean_difference_vec(c[:, [N, S1, S2]], st[:, [N, S1, S2]], s.latency_floor_sd)
            le = normal_mixture_log_e_vec(d, v, margin, s.tau_latency)
        else:
            margin = 0.5 * self.slo.max_error_rate_increase_pp / 100.0
            d, v = rate_difference_vec(c[:, N], c[:, FAIL], st[:, N], st[:, FAIL])
            le = normal_mixture_log_e_vec(d, v, margin, s.tau_error)
        score = np.where(ok, np.asarray(self._log_weights()) + le, -np.inf)
        return float(score.max())

    # --- reporting -----------------------------------------------------------------------------

    def _summaries(self) -> list[str]:
        out = []
        for txn in self.transactions:
            c, st = self._window(f"{txn}|canary", 0), self._window(f"{txn}|stable", 0)
            if not c.n or not st.n:
                continue
            out.append(
                f"{txn}: canary errors {100 * c.rate:.2f}% vs stable {100 * st.rate:.2f}%, "
                f"typical latency {math.exp(c.mean):.0f} vs {math.exp(st.mean):.0f} ms "
                f"over {int(c.n)} and {int(st.n)} runs"
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


def _close(bucket: list[Any]) -> None:
    """Replace a finished bucket's latencies with their p95 to keep the state small."""
    lats = bucket[5]
    bucket[4] = float(np.percentile(lats, 95)) if len(lats) >= 5 else None
    bucket[5] = []


def _series(buckets: list[list[Any]], last: int, window: int, metric: str) -> list[float | None]:
    """One value per bucket index in (last - window, last]; None where too few runs.

    ``metric``: "p95" (ms), "logmean" (mean log latency), "count" (runs) or "errors" (percent).
    """
    by_idx = {b[0]: b for b in buckets}
    out: list[float | None] = []
    for i in range(last - window + 1, last + 1):
        b = by_idx.get(i)
        if b is None or b[1] < 5:
            out.append(None)
        elif metric == "p95":
            # The newest bucket may still hold raw latencies (no later result closed it yet).
            out.append(float(np.percentile(b[5], 95)) if b[5] else b[4])
        elif metric == "logmean":
            out.append(b[6] / b[1] if len(b) > 6 else None)
        elif metric == "count":
            out.append(float(b[1]))
        else:
            out.append(100.0 * b[2] / b[1])
    return out


def _pool(cols: list[list[tuple[float, float] | None]]) -> tuple[list[float], list[float]]:
    """The mean of several transactions' bucket values and its variance, over the buckets that
    all of them have."""
    k = float(len(cols))
    values, variances = [], []
    for row in zip(*cols, strict=True):
        present = [r for r in row if r is not None]
        if len(present) == len(row):
            values.append(sum(r[0] for r in present) / k)
            variances.append(sum(r[1] for r in present) / (k * k))
    return values, variances


def _reference(
    history: Iterable[TransactionResult], txns: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Per transaction: stable's historical error rate (with a Wilson upper bound) and p95."""
    lat: dict[str, list[float]] = {}
    fails: dict[str, int] = {}
    for r in history:
        if r.version != "stable":
            continue
        lat.setdefault(r.transaction, []).append(r.latency_ms)
        fails[r.transaction] = fails.get(r.transaction, 0) + (not r.ok)
    out = {}
    for txn, values in lat.items():
        if len(values) < 20:
            continue
        n, k = len(values), fails[txn]
        out[txn] = {
            "p95": float(np.percentile(values, 95)),
            "logmean": float(np.mean(np.log(np.maximum(values, MIN_LATENCY_MS)))),
            "err": k / n,
            "err_upper": wilson(k, n, 3.0)[1],
            "n": float(n),
        }
    return out


def _sum(parts: Iterable[Moments]) -> Moments:
    n = ev = s1 = s2 = 0.0
    for m in parts:
        n, ev, s1, s2 = n + m.n, ev + m.events, s1 + m.s1, s2 + m.s2
    return Moments(n, ev, s1, s2)


def _fmt_e(log_e: float) -> str:
    if not math.isfinite(log_e):
        return "inf" if log_e > 0 else "0"
    e = math.exp(min(log_e, 700.0))
    return f"{e:.3g}" if e < 1e6 else f"{e:.1e}"


def _fmt_pp(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:+.2f} pp"


def _fmt_pct(log_ratio: float) -> str:
    if not math.isfinite(log_ratio):
        return "n/a"
    return f"{100 * math.expm1(log_ratio):+.1f}%"


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
