"""The synthetic-transaction language: models, loader with FILE:LINE:COL errors, templates."""

from __future__ import annotations

from canary.transactions.loader import load_transaction
from canary.transactions.models import (
    Assertion,
    Auth,
    Capture,
    Retry,
    Step,
    StepsFile,
    Transaction,
    TransactionFile,
)
from canary.transactions.schema import transaction_schema

__all__ = [
    "Assertion",
    "Auth",
    "Capture",
    "Retry",
    "Step",
    "StepsFile",
    "Transaction",
    "TransactionFile",
    "load_transaction",
    "transaction_schema",
]
