"""The JSON Schema (draft 2020-12) of definition files, for editors and other tools."""

from __future__ import annotations

from typing import Any

from canary.transactions.models import TransactionFile

SCHEMA_ID = "https://canary.dev/schemas/transaction.json"


def transaction_schema() -> dict[str, Any]:
    """The schema of a definition as written (``include`` entries allowed in steps)."""
    schema = TransactionFile.model_json_schema(mode="validation")
    schema["title"] = "canary synthetic transaction"
    schema["description"] = (
        "A synthetic HTTP transaction run against the stable and the canary version "
        "(see docs/transactions.md)."
    )
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}
