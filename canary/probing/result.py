"""What one run of a synthetic transaction produced: the record every other layer consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "method": self.method,
            "url": self.url,
            "ok": self.ok,
            "latency_ms": self.latency_ms,
            "status": self.status,
            "error": self.error,
            "attempt": self.attempt,
            "size_bytes": self.size_bytes,
            "truncated": self.truncated,
        }


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
        # What dataclasses.asdict gives, field for field and in order, at a tenth of the cost
        # (asdict deep-copies every value, and every field here is already a plain scalar).
        d: dict[str, Any] = {
            "t": self.t,
            "version": self.version,
            "transaction": self.transaction,
            "ok": self.ok,
            "latency_ms": self.latency_ms,
            "status": self.status,
            "error": self.error,
        }
        if with_steps:
            d["steps"] = [s.to_dict() for s in self.steps]
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
