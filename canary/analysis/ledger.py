"""The engine's memory of one rollout: running sums, restart snapshots and time buckets, bounded."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from canary.analysis.sequential import Moments
from canary.analysis.settings import EngineSettings
from canary.analysis.slo import SLO
from canary.analysis.stats import wilson
from canary.probing.result import TransactionResult

VERSIONS = ("canary", "stable")
# Columns of a series' running totals (a list, so that the state stays plain JSON). Latency sums
# (S1, S2) cover successful runs only (OK of them): a failed run's latency is that of an error
# page or a timeout, not of the service.
N, FAIL, S1, S2, TAIL_N, TAIL, OVER_SLO, OK = range(8)
COLUMNS = 8
ZEROS = [0.0] * COLUMNS
# Buckets kept per series: enough for the forecast window, the batches and the health window.
MAX_BUCKETS = 64
# Batch summaries kept per transaction for the wander estimate: an hour of one-minute batches.
MAX_BATCHES = 64
# Distinct failure messages remembered per series (the rest are counted as "other").
MAX_MESSAGES = 12
# A run of failures counts as at least a sixth of its length in independent ones.
MAX_FAILURE_DISPERSION = 6.0
# Steps remembered per series for the reasons' "slowest step" (the rest are not tracked).
MAX_STEPS = 16
# Latencies are clamped before the log so that a 0 ms result (a broken clock) cannot give -inf.
MIN_LATENCY_MS = 0.1


@dataclass(slots=True)
class Bucket:
    """The runs of one series in one ``forecast_bucket_s`` interval."""

    idx: int
    n: int = 0
    fails: int = 0
    slow: int = 0  # runs over the reference p95 (the stable-health check)
    ok: int = 0
    logsum: float = 0.0  # log latency of successful runs
    logsq: float = 0.0
    tail_n: int = 0
    tail: int = 0
    weight: int | None = None  # the canary's weight while it filled (set by the next decide)
    p95: float | None = None  # of successful runs, once closed
    lats: list[float] = field(default_factory=list)  # successful runs' latencies until closed

    @property
    def logmean(self) -> float | None:
        return self.logsum / self.ok if self.ok else None

    def close(self) -> None:
        """Replace the latencies with their p95 to keep the state small."""
        self.p95 = float(np.percentile(self.lats, 95)) if len(self.lats) >= 5 else None
        self.lats = []

    def current_p95(self) -> float | None:
        # The newest bucket may still hold raw latencies (no later result closed it yet).
        if self.lats:
            return float(np.percentile(self.lats, 95)) if len(self.lats) >= 5 else None
        return self.p95

    def to_list(self) -> list[Any]:
        return [
            self.idx,
            self.n,
            self.fails,
            self.slow,
            self.ok,
            self.logsum,
            self.logsq,
            self.tail_n,
            self.tail,
            self.weight,
            self.p95,
            list(self.lats),
        ]

    @classmethod
    def from_list(cls, v: Sequence[Any]) -> Bucket:
        return cls(
            int(v[0]),
            int(v[1]),
            int(v[2]),
            int(v[3]),
            int(v[4]),
            float(v[5]),
            float(v[6]),
            int(v[7]),
            int(v[8]),
            None if v[9] is None else int(v[9]),
            None if v[10] is None else float(v[10]),
            [float(x) for x in v[11]],
        )


@dataclass(frozen=True)
class Batches:
    """Per-batch values of one metric of stable and their sampling variances."""

    index: npt.NDArray[np.float64]
    diffs: npt.NDArray[np.float64]
    variances: npt.NDArray[np.float64]


class Ledger:
    """Running sufficient statistics of every (transaction, version) series of a rollout.

    ``observe`` is O(1) per result. The state is bounded: MAX_BUCKETS buckets and at most
    ``max_restarts`` + 1 snapshots per series, MAX_MESSAGES messages, whatever the duration.
    """

    def __init__(
        self,
        slo: SLO,
        settings: EngineSettings,
        transactions: Sequence[str],
        reference: dict[str, dict[str, float]],
        t0: float,
        wander: tuple[float, int] = (0.0, 0),
    ) -> None:
        self.slo = slo
        self.settings = settings
        self.t0 = t0
        self.transactions: list[str] = []
        self.reference = reference
        # Stable's wander in its history (variance, batches): the wander estimate's prior.
        self.history_wander = wander
        self.cum: dict[str, list[float]] = {}
        self.snaps: list[dict[str, list[float]]] = [{}]
        self.step_mark: dict[str, float] = {}
        self.step_start = 0.0  # seconds after t0 where the current step began
        self.buckets: dict[str, list[Bucket]] = {}
        self.first_runs: dict[str, list[float]] = {}  # stable's, while no reference exists
        # The warm-up's results, summed as cum is, kept out of the tests (see end_warmup_early).
        self.warm: dict[str, list[float]] = {}
        self.warm_off = False
        # The warm-up's successful runs per ``warmup_bucket_s`` bucket: [runs, sum, sum of
        # squares] of log latency, for the warm-up allowance test (warmup.py). Bounded by
        # warmup_s / warmup_bucket_s buckets per series.
        self.warm_buckets: dict[str, dict[int, list[float]]] = {}
        self.messages: dict[str, dict[str, int]] = {}
        self.batch_log: dict[str, list[list[float | None]]] = {}
        # Per series and step name of a multi-step transaction: [runs, sum of log latency] of
        # the steps of successful runs, for the reasons (the slow step).
        self.step_lat: dict[str, dict[str, list[float]]] = {}
        # Per series: [failures, runs of consecutive failures, last run failed (0/1)]. Real
        # failures come in runs (a pod restarting, a dependency's blip), and a run of k
        # failures carries the evidence of fewer than k independent ones (failure_dispersion).
        self.fail_runs: dict[str, list[float]] = {}
        self.last_t = -math.inf
        self._snap_cache: dict[str, npt.NDArray[np.float64]] = {}
        self._snap_len = -1
        for txn in transactions:
            self.ensure(txn)

    # --- state ---------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "cum": self.cum,
            "snaps": self.snaps,
            "step_mark": self.step_mark,
            "step_start": self.step_start,
            "buckets": {k: [b.to_list() for b in v] for k, v in self.buckets.items()},
            "warmup": self.first_runs,
            "warm": self.warm,
            "warm_off": self.warm_off,
            "warm_buckets": {
                k: [[i, *b] for i, b in sorted(v.items())] for k, v in self.warm_buckets.items()
            },
            "messages": self.messages,
            "batch_log": self.batch_log,
            "step_lat": self.step_lat,
            "fail_runs": self.fail_runs,
            "history_wander": list(self.history_wander),
            "last_t": self.last_t if math.isfinite(self.last_t) else None,
        }

    def load(self, state: dict[str, Any], version: int) -> None:
        """Restore from ``to_state`` (``version`` 1: the engine's first layout, 7 columns)."""

        def cols(v: Sequence[float]) -> list[float]:
            out = [float(x) for x in v]
            if len(out) < COLUMNS:
                # Version 1 summed the latency of every run: the closest reading is all of them.
                out += [0.0] * (COLUMNS - len(out))
                out[OK] = out[N] - out[FAIL] if out[S1] == 0 else out[N]
            return out

        self.cum = {k: cols(v) for k, v in state["cum"].items()}
        self.snaps = [{k: cols(v) for k, v in s.items()} for s in state["snaps"]]
        self.step_mark = {k: float(v) for k, v in state["step_mark"].items()}
        self.step_start = float(state.get("step_start", 0.0))
        if version >= 2:
            self.buckets = {
                k: [Bucket.from_list(b) for b in v] for k, v in state["buckets"].items()
            }
        else:
            # The old buckets lack the columns the batches need; the series start afresh.
            self.buckets = {k: [] for k in self.cum}
        self.first_runs = {k: list(v) for k, v in state.get("warmup", {}).items()}
        self.warm = {k: cols(v) for k, v in state.get("warm", {}).items()}
        self.warm_off = bool(state.get("warm_off", False))
        self.warm_buckets = {
            k: {int(r[0]): [float(x) for x in r[1:4]] for r in v}
            for k, v in state.get("warm_buckets", {}).items()
        }
        self.messages = {k: dict(v) for k, v in state.get("messages", {}).items()}
        hw = state.get("history_wander") or [0.0, 0]
        self.history_wander = (float(hw[0]), int(hw[1]))
        self.batch_log = {k: [list(r) for r in v] for k, v in state.get("batch_log", {}).items()}
        self.step_lat = {
            k: {name: [float(x) for x in row] for name, row in v.items()}
            for k, v in state.get("step_lat", {}).items()
        }
        self.fail_runs = {k: [float(x) for x in v] for k, v in state.get("fail_runs", {}).items()}
        last = state.get("last_t")
        self.last_t = -math.inf if last is None else float(last)
        for txn in {k.rpartition("|")[0] for k in self.cum}:
            if txn not in self.transactions:
                self.transactions.append(txn)
        self._snap_len = -1

    # --- observing -----------------------------------------------------------------------------

    def ensure(self, txn: str) -> None:
        if f"{txn}|canary" in self.cum:
            return
        if txn not in self.transactions:
            self.transactions.append(txn)
        for v in VERSIONS:
            key = f"{txn}|{v}"
            self.cum[key] = list(ZEROS)
            self.buckets[key] = []
            self.step_mark.setdefault(key, 0.0)
        self.first_runs.setdefault(txn, [])

    def observe(self, results: Iterable[TransactionResult]) -> None:
        """Fold results (in time order, any mix of versions) into the running statistics."""
        s = self.settings
        tol = 1.0 + self.slo.max_latency_increase_pct / 100.0
        slo_ms = self.slo.latency_p95_ms
        for r in results:
            if r.version not in VERSIONS:
                continue
            rel = r.t - self.t0
            self.snapshot_until(rel)
            self.last_t = max(self.last_t, r.t)
            txn = r.transaction
            key = f"{txn}|{r.version}"
            c = self.cum.get(key)
            if c is None:
                self.ensure(txn)
                c = self.cum[key]
            fr = self.fail_runs.setdefault(key, [0.0, 0.0, 0.0])
            if not r.ok:
                self._remember(key, r.error)
                fr[0] += 1.0
                fr[1] += 1.0 - fr[2]
            fr[2] = 0.0 if r.ok else 1.0
            warming = rel < s.warmup_s and not self.warm_off
            lat = max(r.latency_ms, MIN_LATENCY_MS)
            y = math.log(lat)
            if warming:
                # The warm-up: its latency is judged by the warm-up allowance test (warmup.py),
                # not by the tests since t0; its errors join those tests after a short blip
                # (warmup_errors_s). Everything counts for the reasons and the error budget.
                warm = self.warm.setdefault(key, list(ZEROS))
                counts = warm if rel < s.warmup_errors_s else c
                c = warm
                if r.ok:
                    wb = self.warm_buckets.setdefault(key, {}).setdefault(
                        math.floor(rel / s.warmup_bucket_s), [0.0, 0.0, 0.0]
                    )
                    wb[0] += 1.0
                    wb[1] += y
                    wb[2] += y * y
            else:
                counts = c
            counts[N] += 1.0
            if r.ok:
                c[OK] += 1.0
                c[S1] += y
                c[S2] += y * y
            else:
                counts[FAIL] += 1.0
            if slo_ms is not None and lat > slo_ms:
                c[OVER_SLO] += 1.0
            ref = self.reference.get(txn)
            in_tail = False
            if ref is None:
                # No history: the tail threshold comes from stable's first successful runs, and
                # tail counting starts once it is fixed, so it never depends on the data it tests.
                if r.version == "stable" and r.ok:
                    w = self.first_runs[txn]
                    w.append(lat)
                    if len(w) >= s.min_window_n:
                        self.reference[txn] = {
                            "p95": float(np.percentile(w, 95)),
                            "logmean": float(np.mean(np.log(w))),
                            "err": -1.0,
                        }
                        w.clear()
            elif r.ok:
                limit = ref["p95"] * tol if r.version == "canary" else ref["p95"]
                c[TAIL_N] += 1.0
                in_tail = lat > limit
                if in_tail:
                    c[TAIL] += 1.0
            if r.ok and len(r.steps) > 1:
                self._steps(key, r)
            if warming:
                continue
            b = self._bucket(key, math.floor(rel / s.forecast_bucket_s))
            b.n += 1
            if r.ok:
                b.ok += 1
                b.logsum += y
                b.logsq += y * y
                b.lats.append(lat)
                if ref is not None:
                    b.tail_n += 1
                    b.tail += in_tail
            else:
                b.fails += 1
            if ref is not None and lat > ref["p95"]:
                b.slow += 1

    def _bucket(self, key: str, idx: int) -> Bucket:
        series = self.buckets[key]
        if not series or series[-1].idx != idx:
            if series:
                series[-1].close()
            series.append(Bucket(idx))
            if len(series) > MAX_BUCKETS:
                del series[0]
        return series[-1]

    def _steps(self, key: str, r: TransactionResult) -> None:
        seen = self.step_lat.setdefault(key, {})
        for st in r.steps:
            row = seen.get(st.name)
            if row is None:
                if len(seen) >= MAX_STEPS:
                    continue
                row = seen[st.name] = [0.0, 0.0]
            row[0] += 1.0
            row[1] += math.log(max(st.latency_ms, MIN_LATENCY_MS))

    def slowest_step(self, txns: Sequence[str]) -> tuple[str, str, float, float] | None:
        """The step whose typical latency (geometric mean) grew most, in ms, canary over
        stable, among ``txns``: (transaction, step, canary ms, stable ms), or None."""
        best: tuple[float, tuple[str, str, float, float]] | None = None
        for txn in txns:
            c = self.step_lat.get(f"{txn}|canary", {})
            st = self.step_lat.get(f"{txn}|stable", {})
            for name, (n, s1) in c.items():
                other = st.get(name)
                if other is None or n < 5 or other[0] < 5:
                    continue
                cm, sm = math.exp(s1 / n), math.exp(other[1] / other[0])
                if best is None or cm - sm > best[0]:
                    best = (cm - sm, (txn, name, cm, sm))
        return best[1] if best is not None and best[0] > 0 else None

    def _remember(self, key: str, error: str | None) -> None:
        msg = (error or "failed (no message)").strip()[:120]
        seen = self.messages.setdefault(key, {})
        if msg not in seen and len(seen) >= MAX_MESSAGES:
            msg = "other"
        seen[msg] = seen.get(msg, 0) + 1

    def snapshot_until(self, rel: float) -> None:
        """Take the restart snapshots whose time has come (before the result at ``rel``)."""
        s = self.settings
        while len(self.snaps) <= s.max_restarts and rel >= len(self.snaps) * s.restart_s:
            self.snaps.append({k: list(v) for k, v in self.cum.items()})

    def mark_step(self, rel: float) -> None:
        self.step_mark = {k: v[N] for k, v in self.cum.items()}
        self.step_start = rel

    def mark_weight(self, weight: int) -> None:
        """Give the buckets observed since the last decision the weight they were probed at."""
        for series in self.buckets.values():
            for b in reversed(series):
                if b.weight is not None:
                    break
                b.weight = weight

    # --- reading -------------------------------------------------------------------------------

    def errors(self, key: str, j: int) -> Moments:
        """Runs and failures of one series since restart window ``j``."""
        c, base = self.cum[key], self.snaps[j].get(key, ZEROS)
        return Moments(c[N] - base[N], c[FAIL] - base[FAIL])

    def latency(self, key: str, j: int) -> Moments:
        """Log-latency sums of one series' successful runs since restart window ``j``."""
        c, base = self.cum[key], self.snaps[j].get(key, ZEROS)
        return Moments(c[OK] - base[OK], 0.0, c[S1] - base[S1], c[S2] - base[S2])

    def tail(self, key: str, j: int) -> Moments:
        c, base = self.cum[key], self.snaps[j].get(key, ZEROS)
        return Moments(c[TAIL_N] - base[TAIL_N], c[TAIL] - base[TAIL])

    def over(self, key: str, j: int) -> Moments:
        c, base = self.cum[key], self.snaps[j].get(key, ZEROS)
        return Moments(c[N] - base[N], c[OVER_SLO] - base[OVER_SLO])

    def windows(self, key: str) -> npt.NDArray[np.float64]:
        """Totals since each restart snapshot, one row per window (windows x COLUMNS)."""
        return np.asarray(self.cum[key]) - self._snap_array(key)

    def _snap_array(self, key: str) -> npt.NDArray[np.float64]:
        if self._snap_len != len(self.snaps):
            self._snap_cache = {}
            self._snap_len = len(self.snaps)
        arr = self._snap_cache.get(key)
        if arr is None:
            arr = np.asarray([s.get(key, ZEROS) for s in self.snaps], dtype=float)
            self._snap_cache[key] = arr
        return arr

    def failure_dispersion(self, txn: str) -> float:
        """How many failures, on average, one run of consecutive failures holds in ``txn``
        (the larger of the two versions'; 1 while there are fewer than 3 runs to tell by):
        the factor by which clustering inflates the variance of a failure count."""
        out = 1.0
        for v in VERSIONS:
            fails, runs, _ = self.fail_runs.get(f"{txn}|{v}", (0.0, 0.0, 0.0))
            if runs >= 3:
                out = max(out, fails / runs)
        return min(out, MAX_FAILURE_DISPERSION)

    def step_runs(self, key: str) -> int:
        return int(self.cum[key][N] - self.step_mark.get(key, 0.0))

    def recent(self, key: str, rel: float, span_s: float) -> list[Bucket]:
        lo = math.floor((rel - span_s) / self.settings.forecast_bucket_s)
        return [b for b in self.buckets.get(key, []) if b.idx >= lo]

    def top_messages(self, txn: str, version: str, k: int = 3) -> list[tuple[str, int]]:
        seen = self.messages.get(f"{txn}|{version}", {})
        return sorted(seen.items(), key=lambda kv: (-kv[1], kv[0]))[:k]

    def warmup_runs(self, txn: str, version: str) -> tuple[int, int]:
        w = self.warm.get(f"{txn}|{version}", ZEROS)
        return int(w[N]), int(w[FAIL])

    def end_warmup_early(self) -> None:
        """Steps shorter than the warm-up leave no room for it: its results join the tests."""
        for key, w in self.warm.items():
            c = self.cum.setdefault(key, list(ZEROS))
            for i in range(COLUMNS):
                c[i] += w[i]
        self.warm = {}
        self.warm_off = True

    def close_batches(self, before: int) -> None:
        """Summarise every batch (``batch_s`` long) with index below ``before`` not yet logged:
        per transaction and version, the mean log latency (successful runs) and tail share, with
        their sampling variances. Stable's own batches measure its wander (a canary's
        regression, drift or leak cannot pass for wander there); the canary's, beside them, give
        the paired differences whose spread is the wander of the difference itself (a shift
        shared by both versions cancels there). Row: [index, *stable's four, *canary's four].
        At most MAX_BATCHES are kept per transaction."""
        s = self.settings
        per = max(1, round(s.batch_s / s.forecast_bucket_s))
        for txn in self.transactions:
            log = self.batch_log.setdefault(txn, [])
            done = int(log[-1][0] or 0) if log else -1
            agg: dict[int, list[float]] = {}
            for off, version in ((0, "stable"), (5, "canary")):
                for b in self.buckets.get(f"{txn}|{version}", []):
                    i = b.idx // per
                    if i <= done or i >= before:
                        continue
                    a = agg.setdefault(i, [0.0] * 10)
                    a[off] += b.ok
                    a[off + 1] += b.logsum
                    a[off + 2] += b.logsq
                    a[off + 3] += b.tail_n
                    a[off + 4] += b.tail
            for i in sorted(agg):
                a = agg[i]
                log.append([float(i), *self._summary(a[:5]), *self._summary(a[5:])])
            del log[:-MAX_BATCHES]

    def _summary(self, a: list[float]) -> list[float | None]:
        """One version's batch: [mean log latency, its variance, tail share, its variance]."""
        floor = self.settings.latency_floor_sd**2
        row: list[float | None] = [None, None, None, None]
        if a[0] >= 5:
            m = Moments(a[0], 0, a[1], a[2])
            row[0], row[1] = m.mean, max(m.var, floor) / m.n
        if a[3] >= 5:
            p = (a[4] + 1) / (a[3] + 2)
            row[2], row[3] = a[4] / a[3], p * (1 - p) / a[3]
        return row

    def batches(self, txn: str, metric: str) -> Batches:
        """Stable's logged batches of one transaction for "latency" or "tail" (close_batches)."""
        col = 1 if metric == "latency" else 3
        rows = [r for r in self.batch_log.get(txn, []) if r[col] is not None]
        return Batches(
            np.asarray([r[0] for r in rows], dtype=float),
            np.asarray([r[col] for r in rows], dtype=float),
            np.asarray([r[col + 1] for r in rows], dtype=float),
        )

    def paired_batches(self, txn: str, metric: str) -> Batches:
        """Canary minus stable per logged batch of one transaction, where both have runs, with
        the sum of their sampling variances (rows of an older state, without the canary's
        columns, are left out)."""
        col = 1 if metric == "latency" else 3
        # The canary's columns follow stable's four.
        rows = [
            r
            for r in self.batch_log.get(txn, [])
            if len(r) > col + 5 and r[col] is not None and r[col + 4] is not None
        ]
        return Batches(
            np.asarray([r[0] for r in rows], dtype=float),
            np.asarray([float(r[col + 4] or 0) - float(r[col] or 0) for r in rows], dtype=float),
            np.asarray(
                [float(r[col + 5] or 0) + float(r[col + 1] or 0) for r in rows], dtype=float
            ),
        )


def reference_from_history(
    history: Iterable[TransactionResult], txns: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Per transaction: stable's historical error rate (with a Wilson upper bound) and the p95 and
    mean log latency of its successful runs."""
    lat: dict[str, list[float]] = {}
    runs: dict[str, int] = {}
    fails: dict[str, int] = {}
    for r in history:
        if r.version != "stable":
            continue
        runs[r.transaction] = runs.get(r.transaction, 0) + 1
        fails[r.transaction] = fails.get(r.transaction, 0) + (not r.ok)
        if r.ok:
            lat.setdefault(r.transaction, []).append(r.latency_ms)
    out = {}
    for txn, n in runs.items():
        values = lat.get(txn, [])
        if n < 20 or len(values) < 20:
            continue
        k = fails[txn]
        out[txn] = {
            "p95": float(np.percentile(values, 95)),
            "logmean": float(np.mean(np.log(np.maximum(values, MIN_LATENCY_MS)))),
            "err": k / n,
            "err_upper": wilson(k, n, 3.0)[1],
            "n": float(n),
        }
    return out


def history_wander(
    history: Iterable[TransactionResult], batch_s: float, floor_sd: float
) -> tuple[float, int]:
    """Stable's own wander in its history: the spread of its per-batch mean log latency (all
    transactions pooled, each about its own mean) beyond what the batch's run count explains,
    and the number of batches it rests on. (0, 0) with too little history."""
    by_txn: dict[str, list[tuple[float, float]]] = {}
    for r in history:
        if r.version == "stable" and r.ok:
            y = math.log(max(r.latency_ms, MIN_LATENCY_MS))
            by_txn.setdefault(r.transaction, []).append((r.t, y))
    sums: dict[int, list[float]] = {}
    spread = []
    for rows in by_txn.values():
        if len(rows) < 20:
            continue
        ys = np.asarray([y for _, y in rows])
        mean = float(ys.mean())
        spread.append(float(ys.var()))
        for t, y in rows:
            a = sums.setdefault(math.floor(t / batch_s), [0.0, 0.0])
            a[0] += 1
            a[1] += y - mean
    if not spread:
        return 0.0, 0
    var = max(float(np.mean(spread)), floor_sd * floor_sd)
    keep = [(a[1] / a[0], var / a[0]) for a in sums.values() if a[0] >= 5]
    if len(keep) < 8:
        return 0.0, 0
    d = np.asarray([k[0] for k in keep])
    v = np.asarray([k[1] for k in keep])
    med = float(np.median(d))
    sd = 1.4826 * float(np.median(np.abs(d - med)))
    return max(0.0, sd * sd - float(np.median(v))), len(keep)
