"""What one run of a synthetic transaction produced: the record every other layer consumes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class StepResult:
    """One HTTP request of a transaction run (one per attempt when a step is retried)."""

    name: str
    method: str
    url: str
    ok: bool
    latency_ms: float
    status: int | None = None
    error: str | None = None
    attempt: int = 1
    size_bytes: int | None = None  # body bytes read (at most the cap)
    truncated: bool = False  # the body was longer than the cap and was cut


@dataclass(slots=True)
class TransactionResult:
    """The outcome of one transaction run against one version.

    ``t`` is the wall-clock start (Unix seconds). ``error`` is None when ``ok``; otherwise it
    names the step and the check that failed, with the actual value, in words an operator reads.
    """

    t: float
    version: str
    transaction: str
    ok: bool
    latency_ms: float
    status: int | None = None
    error: str | None = None
    steps: list[StepResult] = field(default_factory=list)

    def to_dict(self, *, with_steps: bool = True) -> dict[str, Any]:
        d = asdict(self)
        if not with_steps:
            d.pop("steps")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TransactionResult:
        steps = [StepResult(**s) for s in d.get("steps") or []]
        return cls(
            t=float(d["t"]),
            version=str(d["version"]),
            transaction=str(d["transaction"]),
            ok=bool(d["ok"]),
            latency_ms=float(d["latency_ms"]),
            status=d.get("status"),
            error=d.get("error"),
            steps=steps,
        )
