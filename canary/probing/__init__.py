"""Probing: running a synthetic transaction against one target version and judging each response."""

from __future__ import annotations

from canary.probing.result import StepResult, TransactionResult
from canary.probing.runner import run_transaction
from canary.probing.target import Target

__all__ = ["StepResult", "Target", "TransactionResult", "run_transaction"]
