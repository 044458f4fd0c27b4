"""What every judge returns (Decision), what it is given, and the Judge protocols.

Two protocols: ``Judge`` decides one window from a JudgeInput (pure; the bench and the replay
use it), and ``RolloutJudge`` is what the live controller drives, step after step:
``open(setup, state)`` gives a ``JudgeSession`` that observes results, decides, and hands back
its state (or None) to be kept between tasks. Every registered judge implements both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, get_args

from canary.analysis.checks import json_safe
from canary.analysis.slo import SLO
from canary.probing.result import TransactionResult

Action = Literal["increase", "hold", "promote", "rollback"]
ACTIONS: tuple[str, ...] = get_args(Action)


@dataclass
class Decision:
    """What to do with the rollout now, why (sentences with numbers) and the numbers themselves."""

    action: Action
    reasons: list[str]
    predictive: bool = False
    alerts: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain, strict JSON (no NaN)."""
        return {
            "action": self.action,
            "reasons": list(self.reasons),
            "predictive": self.predictive,
            "alerts": list(self.alerts),
            "metrics": json_safe(self.metrics),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Decision:
        action = d["action"]
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
        return cls(
            action=action,
            reasons=[str(r) for r in d.get("reasons") or []],
            predictive=bool(d.get("predictive", False)),
            alerts=[str(a) for a in d.get("alerts") or []],
            metrics=dict(d.get("metrics") or {}),
        )


@dataclass
class JudgeInput:
    """Everything a judge may look at for one decision; results carry their own timestamps."""

    canary: Sequence[TransactionResult]  # canary results of the current step window
    stable: Sequence[TransactionResult]  # stable results probed at the same time
    history: Sequence[TransactionResult]  # stable results before this step
    cumulative_canary_failures: int  # over the whole rollout so far, this window included
    slo: SLO
    weight: int  # current canary weight
    max_weight: int
    step_index: int
    holds: int  # consecutive holds at this step so far
    max_holds: int
    transactions: Sequence[str]  # names expected
    min_samples: int = 10


class Judge(Protocol):
    """Anything that decides; implementations must be pure (same input, same Decision)."""

    name: str

    def decide(self, inp: JudgeInput) -> Decision: ...


@dataclass(frozen=True)
class JudgeSetup:
    """What the controller opens a judge with: the rollout's objectives and settings.

    ``history`` is read only when called (a judge that keeps a baseline in its state reads it
    once); ``canary_failures`` counts the failed canary runs of the rollout so far.
    """

    slo: SLO
    transactions: Sequence[str]
    history: Callable[[], Sequence[TransactionResult]]
    t0: float
    max_weight: int
    max_holds: int
    min_samples: int
    canary_failures: int = 0
    step: int = 0
    engine: dict[str, Any] = field(default_factory=dict)


class JudgeSession(Protocol):
    """One rollout's judge between two saves: observe results, decide, hand the state back."""

    def observe(self, results: Sequence[TransactionResult]) -> None: ...

    def decide(
        self, t: float, weight: int, *, step_end: bool, holds: int = 0, final: bool = False
    ) -> Decision: ...

    def to_state(self) -> dict[str, Any] | None: ...


class RolloutJudge(Protocol):
    """A judge the controller drives; ``interim``: it may look while a step runs."""

    name: str
    interim: ClassVar[bool]

    def open(self, setup: JudgeSetup, state: dict[str, Any] | None) -> JudgeSession: ...
