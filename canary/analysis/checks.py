"""The record every test returns: a verdict (pass / fail / inconclusive) with its numbers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

Verdict = Literal["pass", "fail", "inconclusive"]


@dataclass
class Check:
    """One test on one transaction; ``reason`` is the sentence an operator reads."""

    transaction: str
    check: str
    verdict: Verdict
    reason: str
    p_value: float | None = None
    numbers: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "transaction": self.transaction,
                "check": self.check,
                "verdict": self.verdict,
                "reason": self.reason,
                "p_value": self.p_value,
                "numbers": self.numbers,
            }
        )


def three_way(p: float, worse: bool, alpha: float, suspect_alpha: float) -> Verdict:
    """Fail on strong evidence of a regression, inconclusive on some, pass otherwise.

    ``worse`` is whether the point estimate is on the bad side of the tolerance: a p-value
    can only count against the canary when the data itself leans that way.
    """
    if worse and p < alpha:
        return "fail"
    if worse and p < suspect_alpha:
        return "inconclusive"
    return "pass"


def fmt_p(p: float) -> str:
    """A p-value as an operator reads it: two significant digits, floor at 0.0001."""
    if p < 0.0001:
        return "p<0.0001"
    return f"p={p:.2g}" if p < 0.01 else f"p={p:.2f}"


def fmt_not_yet(p: float, alpha: float) -> str:
    """Why an inconclusive test does not fail yet, with the bar it would have to clear."""
    return f"{fmt_p(p)}; fails below p={alpha:.2g}"


def json_safe(x: Any) -> Any:
    """Recursively replace nan/inf with None so that strict JSON accepts the value."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    if hasattr(x, "item") and callable(x.item):  # numpy scalars
        return json_safe(x.item())
    return x
