"""Analysis: pure functions that turn synthetic-transaction results into rollout decisions."""

from canary.analysis.decision import Decision, Judge, JudgeInput
from canary.analysis.judge import JUDGES, get_judge
from canary.analysis.slo import SLO

__all__ = ["JUDGES", "SLO", "Decision", "Judge", "JudgeInput", "get_judge"]
