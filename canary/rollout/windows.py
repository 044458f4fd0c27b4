"""Probing windows: their names, the BatchSpec a probe batch runs from, and a step's planning."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any

# How long analysis waits past the end of a window for late batches before judging without them.
STRAGGLER_GRACE_S = 30.0
# A window is cut into at most this many batches (raising batch_size when needed). A batch holds
# no worker slot while it paces (the process's pacer does, canary.fleet), so the cap is not for
# the slots: each batch is a task to send, a claim to keep alive and a record to write, while
# larger batches cost nothing, since a worker's probe threads are shared by all its batches.
# Override with CANARY_MAX_BATCHES.
MAX_BATCHES_PER_WINDOW = 48


# A step's probes end this share of its interval (at most END_MARGIN_MAX_S) before the step
# does, so that its last batches are recorded and judged by the time it is due: with probes to
# the very end, every step boundary waited for the last runs, their records and the analysis,
# and rollouts whose steps end together queued those on one interpreter (scripts/bench-scale).
END_MARGIN_SHARE = 0.1
END_MARGIN_MAX_S = 3.0


def end_margin(interval: float) -> float:
    """Seconds before a step's end by which its probes are done (see END_MARGIN_SHARE)."""
    return max(0.0, min(END_MARGIN_MAX_S, END_MARGIN_SHARE * interval))


def max_batches() -> int:
    """How many batches a window may be cut into (CANARY_MAX_BATCHES, default 48)."""
    try:
        return max(1, int(os.environ.get("CANARY_MAX_BATCHES") or MAX_BATCHES_PER_WINDOW))
    except ValueError:
        return MAX_BATCHES_PER_WINDOW


def window_name(step: int, attempt: int) -> str:
    """The name of probing window (step, attempt): ``s3a1``."""
    return f"s{step}a{attempt}"


def window_position(window: str) -> tuple[int, int]:
    """``"s3a1"`` → ``(3, 1)``: windows order by step, then attempt."""
    step, _, attempt = window[1:].partition("a")
    return int(step), int(attempt)


@dataclass(frozen=True)
class VersionTarget:
    """Where a batch sends one version's transactions."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchSpec:
    """Everything a probe batch needs, so that it never reads the rollout record.

    The batch runs probes ``slot, slot + slots, ...`` of a series of ``series_size`` spread over
    ``spread_s`` from ``start_at``, against every version in ``targets`` side by side; with
    ``flush_s`` it pushes its runs on that grid for the interim checks.
    """

    rollout_id: str
    window: str
    batch_id: str
    transaction: str
    transaction_def: dict[str, Any]
    targets: dict[str, VersionTarget]
    count: int
    slot: int
    slots: int
    series_size: int
    start_at: float
    spread_s: float
    window_batches: int
    concurrency: int = 8
    environment: str = "default"
    flush_s: float | None = None

    @property
    def versions(self) -> list[str]:
        return list(self.targets)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON for the task message (``flush_s`` only when set)."""
        out = dataclasses.asdict(self)
        if self.flush_s is None:
            del out["flush_s"]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BatchSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["targets"] = {name: VersionTarget(**t) for name, t in d["targets"].items()}
        return cls(**kw)


@dataclass(frozen=True)
class WindowPlan:
    """A step's batches, and the probe runs each one carries (what the accounting expects)."""

    batches: list[BatchSpec]

    @property
    def expected(self) -> dict[str, int]:
        return {b.batch_id: len(b.targets) * b.count for b in self.batches}


def plan_window(
    *,
    rollout_id: str,
    window: str,
    transactions: list[dict[str, Any]],
    targets: dict[str, VersionTarget],
    per_step: int,
    batch_size: int,
    concurrency: int,
    environments: list[str],
    start: float,
    interval: float,
    flush_s: float | None,
) -> WindowPlan:
    """Cut a window into batches: per transaction, a series of ``per_step`` probes.

    Batches of one series interleave over the window so the analysis sees a time series rather
    than bursts (batch j runs probes j, j+m, j+2m, ...), and the batches go round the
    environments in turn.
    """
    cap = max(1, max_batches() // max(1, len(transactions)))
    per_series = min(math.ceil(per_step / batch_size), cap)
    total = per_series * len(transactions)
    batches: list[BatchSpec] = []
    for tx in transactions:
        for j in range(per_series):
            batches.append(
                BatchSpec(
                    rollout_id=rollout_id,
                    window=window,
                    batch_id=f"{window}.{tx['transaction_name']}.{j}",
                    transaction=tx["transaction_name"],
                    transaction_def=tx,
                    targets=targets,
                    count=len(range(j, per_step, per_series)),
                    slot=j,
                    slots=per_series,
                    series_size=per_step,
                    start_at=start,
                    # All but the end margin: the last batch recorded starts the analysis at
                    # once, so the step is judged by its end and the next one starts on time.
                    spread_s=interval - end_margin(interval),
                    window_batches=total,
                    concurrency=concurrency,
                    environment=environments[len(batches) % len(environments)],
                    flush_s=flush_s,
                )
            )
    return WindowPlan(batches)
