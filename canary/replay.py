"""Recordings (format ``canary-replay/1``) in and out, and replaying them through the analysis.

The contract is /work/shared/specs/replay-format.md. ``replay`` drives the same
AnalysisEngine a live rollout uses, on the rollout's schedule, and yields the JSON Lines the
``canary replay`` command prints.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from canary.analysis.decision import Decision
from canary.analysis.engine import AnalysisEngine, EngineSettings
from canary.analysis.slo import SLO
from canary.documents import PathT, parse_json, parse_model
from canary.errors import ConfigError, Problem
from canary.probing.result import TransactionResult

FORMAT = "canary-replay/1"
# Recordings hold every result of a rollout; far above the 1 MiB cap of hand-written configs.
MAX_RECORDING_BYTES = 512 << 20


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RolloutModel(_Strict):
    initial_weight: int = Field(ge=0, le=100)
    step_weight: int = Field(ge=1, le=100)
    max_weight: int = Field(ge=1, le=100)
    step_interval_s: float = Field(gt=0)
    # Optional: the explicit weights; when present they are the schedule.
    steps: list[int] | None = Field(default=None, min_length=1)

    @property
    def last_weight(self) -> int:
        return self.steps[-1] if self.steps else self.max_weight

    def first_weight(self) -> int:
        return self.steps[0] if self.steps else self.initial_weight

    def next_weight(self, weight: int) -> int:
        """The weight after an increase from ``weight``."""
        if self.steps:
            return next((w for w in self.steps if w > weight), self.steps[-1])
        return min(weight + self.step_weight, self.max_weight)


class SLOModel(_Strict):
    success_threshold: float | None = Field(default=None, gt=0, le=100)
    error_budget: int | None = Field(default=None, ge=0)
    latency_p95_ms: float | None = Field(default=None, gt=0)
    max_latency_increase_pct: float | None = Field(default=None, ge=0)
    max_error_rate_increase_pp: float | None = Field(default=None, ge=0, lt=100)
    rollback_on_error_budget: bool | None = None  # a project addition: optional


class ResultModel(_Strict):
    t: float = Field(allow_inf_nan=False)
    version: Literal["stable", "canary"]
    transaction: str
    ok: bool
    latency_ms: float = Field(ge=0, allow_inf_nan=False)
    status: int | None = None
    error: str | None = None


class RecordingModel(_Strict):
    format: Literal["canary-replay/1"]
    name: str
    description: str | None = None
    rollout: RolloutModel
    slo: SLOModel = Field(default_factory=SLOModel)
    transactions: list[str] = Field(min_length=1)
    history: list[ResultModel] = Field(default_factory=list)
    observations: list[ResultModel]
    # Project addition (optional): when the recording stops, if later than its last result.
    end_t: float | None = Field(default=None, ge=0)


@dataclass
class Recording:
    """A validated recording, results as TransactionResult with t relative to first traffic."""

    name: str
    rollout: RolloutModel
    slo: SLO
    transactions: list[str]
    history: list[TransactionResult]
    observations: list[TransactionResult]
    description: str | None = None
    end_t: float | None = None
    slo_raw: dict[str, Any] = field(default_factory=dict)

    @property
    def end(self) -> float:
        last = self.observations[-1].t if self.observations else 0.0
        return max(last, self.end_t or 0.0)

    def to_dict(self) -> dict[str, Any]:
        """The recording as ``canary-replay/1`` JSON."""
        out: dict[str, Any] = {
            "format": FORMAT,
            "name": self.name,
            "rollout": self.rollout.model_dump(exclude_none=True),
            "slo": dict(self.slo_raw),
            "transactions": list(self.transactions),
            "history": [_result_json(r) for r in self.history],
            "observations": [_result_json(r) for r in self.observations],
        }
        if self.description is not None:
            out["description"] = self.description
        if self.end_t is not None:
            out["end_t"] = self.end_t
        return out


def _result_json(r: TransactionResult) -> dict[str, Any]:
    d: dict[str, Any] = {
        "t": round(r.t, 3),
        "version": r.version,
        "transaction": r.transaction,
        "ok": r.ok,
        "latency_ms": round(r.latency_ms, 3),
    }
    if r.status is not None:
        d["status"] = r.status
    if r.error is not None:
        d["error"] = r.error
    return d


# --- loading ------------------------------------------------------------------------------------


def load_recording(path: str | Path) -> Recording:
    """Read and validate a recording; a ConfigError names the file, position and field at fault."""
    name = str(path)
    p = Path(path)
    try:
        if p.stat().st_size > MAX_RECORDING_BYTES:
            raise ConfigError([Problem(name, 1, 1, "", "file is too large for a recording")])
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(name, 1, 1, "", "no such file")]) from None
    except IsADirectoryError:
        raise ConfigError([Problem(name, 1, 1, "", "is a directory, not a file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(name, 1, 1, "", f"cannot read: {exc}")]) from None
    return parse_recording(text, name)


def parse_recording(text: str, name: str = "<recording>") -> Recording:
    """Validate recording text. The fast path is json.loads; positions are found only on error."""
    try:
        data = json.loads(text)
        model = RecordingModel.model_validate(data)
    except (json.JSONDecodeError, ValidationError, RecursionError):
        # The slow, position-tracking parser turns the same fault into file:line:col problems.
        doc = parse_json(name, text)
        model = parse_model(RecordingModel, doc)
    problems = _rule_problems(model)
    if problems:
        doc = parse_json(name, text)
        raise ConfigError([doc.problem(path, msg) for path, msg in problems[:20]])
    rec = Recording(
        name=model.name,
        description=model.description,
        rollout=model.rollout,
        slo=SLO.from_dict(model.slo.model_dump(exclude_none=True)),
        transactions=list(model.transactions),
        history=[_to_result(r) for r in model.history],
        observations=[_to_result(r) for r in model.observations],
        end_t=model.end_t,
        slo_raw=model.slo.model_dump(exclude_none=True),
    )
    return rec


def _rule_problems(m: RecordingModel) -> list[tuple[PathT, str]]:
    """The contract's rules that span fields: names listed, history before 0, sorted by t."""
    out: list[tuple[PathT, str]] = []
    names = set(m.transactions)
    if m.rollout.initial_weight > m.rollout.max_weight:
        out.append((("rollout", "initial_weight"), "must be <= rollout.max_weight"))
    steps = m.rollout.steps or []
    for i, w in enumerate(steps):
        # A first weight of 0 is the weight-0 isolated check, as `initial_weight: 0` is.
        if not (0 if i == 0 else 1) <= w <= 100:
            bounds = "0 and 100 (the first)" if i == 0 else "1 and 100"
            out.append((("rollout", "steps", i), f"every weight must be between {bounds}"))
        elif i and w <= steps[i - 1]:
            out.append((("rollout", "steps", i), "weights must increase"))
    for i, r in enumerate(m.history):
        if r.version != "stable":
            out.append((("history", i, "version"), "history holds stable results only"))
        if r.t >= 0:
            out.append((("history", i, "t"), "history results must have t < 0"))
        if r.transaction not in names:
            out.append((("history", i, "transaction"), f"{r.transaction!r} is not in transactions"))
        if len(out) >= 20:
            return out
    prev = 0.0
    for i, r in enumerate(m.observations):
        if r.t < 0:
            out.append((("observations", i, "t"), "observations must have t >= 0"))
        elif r.t < prev:
            out.append((("observations", i, "t"), f"not sorted by t ({r.t} after {prev})"))
        prev = max(prev, r.t)
        if r.transaction not in names:
            out.append(
                (("observations", i, "transaction"), f"{r.transaction!r} is not in transactions")
            )
        if len(out) >= 20:
            return out
    return out


def _to_result(r: ResultModel) -> TransactionResult:
    return TransactionResult(r.t, r.version, r.transaction, r.ok, r.latency_ms, r.status, r.error)


# --- exporting ------------------------------------------------------------------------------------


class _StoreLike(Protocol):
    def load_rollout(self, rollout_id: str) -> dict[str, Any] | None: ...
    def read_events(
        self, rollout_id: str, after: str = "0-0", *, block_ms: int | None = None, count: int = 500
    ) -> list[tuple[str, dict[str, Any]]]: ...
    def all_results(self, rollout_id: str) -> list[TransactionResult]: ...
    def history(
        self, service: str, transaction: str, *, since: float | None = None
    ) -> list[TransactionResult]: ...


def _all_events(store: _StoreLike, rollout_id: str) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    after = "0-0"
    while True:
        page = store.read_events(rollout_id, after)
        out.extend(page)
        if len(page) < 500:
            return out
        after = page[-1][0]


def export_recording(store: _StoreLike, rollout_id: str) -> dict[str, Any]:
    """The ``canary-replay/1`` recording of a rollout in Redis; LookupError for an unknown id."""
    record = store.load_rollout(rollout_id)
    if record is None:
        raise LookupError(f"unknown rollout {rollout_id!r}")
    cfg = record.get("config") or {}
    sched = cfg.get("schedule") or {}
    names = [
        str(t.get("transaction_name") or t.get("name"))
        for t in record.get("transactions") or []
        if t.get("transaction_name") or t.get("name")
    ]
    if not names:
        names = list(cfg.get("transactions") or [])
    events = _all_events(store, rollout_id)
    results = store.all_results(rollout_id)
    traffic = [
        ev["t"]
        for _, ev in events
        if ev.get("type") == "weight" and int((ev.get("data") or {}).get("weight") or 0) > 0
    ]
    # Where each probing window with traffic began (the step events say), so that each can be
    # laid on the schedule's grid below.
    starts = [
        float((ev.get("data") or {}).get("started_at") or ev["t"])
        for _, ev in events
        if ev.get("type") == "step" and int((ev.get("data") or {}).get("weight") or 0) > 0
    ]
    if starts:
        t_zero = starts[0]
    elif traffic:
        t_zero = min(traffic)
    elif results:
        t_zero = results[0].t
    else:
        t_zero = float(record.get("created_at") or 0.0)
    interval = float(sched.get("step_interval", 60.0))

    def rel(t: float) -> float:
        """Window k (0 = first traffic) starts at k * step_interval: a replay's step ends then
        fall where the live rollout judged, without the coordinator's moments between windows."""
        k = bisect.bisect_right(starts, t) - 1
        return t - t_zero if k < 0 else t - starts[k] + k * interval

    names += sorted({r.transaction for r in results} - set(names))
    history: list[TransactionResult] = []
    for name in names:
        history.extend(
            r for r in store.history(str(record.get("service") or ""), name) if r.t < t_zero
        )
    # Stable runs of the isolated check (before any traffic) are history too; canary ones are
    # not part of the rollout the format describes. The analysis already added the judged ones
    # to the service's history, so each run is kept once.
    history.extend(r for r in results if r.t < t_zero and r.version == "stable")
    history = list({_identity(r): r for r in history}.values())
    history.sort(key=lambda r: r.t)
    obs = [r for r in results if r.t >= t_zero and r.version in ("stable", "canary")]
    shifted = sorted((_moved(r, rel(r.t)) for r in obs), key=lambda r: r.t)
    last_event = max((ev["t"] for _, ev in events), default=t_zero)
    rec = Recording(
        name=str(record.get("name") or rollout_id),
        description=f"exported from rollout {rollout_id}",
        rollout=_schedule(sched),
        slo=SLO.from_dict(record.get("slo")),
        transactions=names,
        history=[_moved(r, r.t - t_zero) for r in history],
        observations=shifted,
        end_t=round(max(0.0, rel(last_event), shifted[-1].t if shifted else 0.0), 3),
        slo_raw=dict(record.get("slo") or {}),
    )
    return rec.to_dict()


def _schedule(sched: dict[str, Any]) -> RolloutModel:
    """The schedule the rollout really had: its explicit weights, when it listed them."""
    interval = float(sched.get("step_interval", 60.0))
    steps = [int(w) for w in sched.get("steps") or [] if isinstance(w, int | float)]
    if steps:
        rises = [b - a for a, b in zip([0, *steps], steps, strict=False)]
        return RolloutModel(
            initial_weight=steps[0],
            step_weight=max(rises),
            max_weight=steps[-1],
            step_interval_s=interval,
            steps=steps,
        )
    return RolloutModel(
        initial_weight=int(sched.get("initial_weight", 5)),
        step_weight=int(sched.get("step_weight", 5)),
        max_weight=int(sched.get("max_weight", 100)),
        step_interval_s=interval,
    )


def _identity(r: TransactionResult) -> tuple[Any, ...]:
    # History entries are stored without their steps: compare what both copies keep.
    return (r.t, r.version, r.transaction, r.ok, r.latency_ms, r.status, r.error)


def _moved(r: TransactionResult, t: float) -> TransactionResult:
    return TransactionResult(t, r.version, r.transaction, r.ok, r.latency_ms, r.status, r.error)


# --- replaying ------------------------------------------------------------------------------------


class StreamJudge(Protocol):
    """What the replay loop drives: the engine, or a reference judge in the benchmark."""

    def observe(self, results: Sequence[TransactionResult]) -> None: ...

    def decide(
        self, t: float, weight: int, *, step_end: bool, holds: int = 0, final: bool = False
    ) -> Decision: ...


JudgeFactory = Callable[[Recording, EngineSettings], StreamJudge]


def engine_factory(rec: Recording, settings: EngineSettings) -> StreamJudge:
    """The production engine, exactly as a live rollout builds it (t = 0 at first traffic)."""
    return AnalysisEngine(rec.slo, settings, rec.transactions, rec.history, t0=0.0)


def replay(
    rec: Recording,
    settings: EngineSettings | None = None,
    *,
    judge: JudgeFactory = engine_factory,
) -> Iterator[dict[str, Any]]:
    """Yield decision lines, then the outcome line, by the rules of the replay format.

    Checkpoints fall every ``check_interval_s`` and at each step end; at each, the judge first
    sees every result with t <= the checkpoint (never later ones) and then decides. Interim
    checks print only when they roll back.
    """
    s = settings or EngineSettings()
    j = judge(rec, s)
    sched = rec.rollout
    interval = sched.step_interval_s
    obs = rec.observations
    # Without an explicit end, allow a decision a moment after the last result: probes end a
    # little before the step boundary they belong to.
    end = rec.end_t if rec.end_t is not None else rec.end + min(s.check_interval_s, interval / 10)
    end = max(end, rec.end)
    weight = sched.first_weight()
    holds = 0
    i = 0
    k = 0  # interim checkpoints taken
    step_end_t = interval
    t_prev = 0.0
    while True:
        t_interim = (k + 1) * s.check_interval_s
        is_step_end = step_end_t <= t_interim + 1e-9
        t = step_end_t if is_step_end else t_interim
        if t > end + 1e-9:
            break
        if not is_step_end or abs(step_end_t - t_interim) < 1e-9:
            k += 1
        start = i
        while i < len(obs) and obs[i].t <= t:
            i += 1
        if i > start:
            j.observe(obs[start:i])
        t_prev = t
        final = sched.next_weight(weight) >= sched.last_weight
        d = j.decide(t, weight, step_end=is_step_end, holds=holds, final=final)
        if d.action == "rollback":
            yield _line(t, 0, "rollback", d)
            yield {"outcome": "rolled_back", "t": _round(t)}
            return
        if not is_step_end:
            continue
        if d.action == "hold":
            holds += 1
            step_end_t += interval
            yield _line(t, weight, "hold", d)
            continue
        holds = 0
        weight = sched.next_weight(weight)
        if weight >= sched.last_weight:
            yield _line(t, weight, "promote", d)
            yield {"outcome": "promoted", "t": _round(t)}
            return
        yield _line(t, weight, "increase", d)
        step_end_t += interval
    yield {"outcome": "incomplete", "t": _round(max(t_prev, rec.end))}


def _round(t: float) -> float:
    return round(t, 3) if math.isfinite(t) else t


def _line(t: float, weight: int, action: str, d: Decision) -> dict[str, Any]:
    return {
        "t": _round(t),
        "weight": weight,
        "action": action,
        "reasons": list(d.reasons),
        "predictive": bool(d.predictive) and action == "rollback",
    }
