"""Where a rollout is in its schedule, counted one way for the CLI, the dashboard and the exporter."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Progress:
    """Step ``number`` of ``total`` (both counted from 1, the isolated check at weight 0 included)."""

    number: int
    total: int
    weight: int
    next_weight: int | None

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> Progress:
        weights = [int(w) for w in record.get("weights") or []]
        index = int(record.get("step") or 0)
        following = weights[index + 1] if index + 1 < len(weights) else None
        return cls(index + 1, len(weights), int(record.get("weight") or 0), following)

    def text(self, *, final: bool = False) -> str:
        """``step 3 of 7 (weight 10%, next 30%)``; a finished rollout has no next weight."""
        nxt = "" if final or self.next_weight is None else f", next {self.next_weight}%"
        return f"step {self.number} of {self.total} (weight {self.weight}%{nxt})"
