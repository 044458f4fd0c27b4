"""Property tests: no input makes the loader crash; it answers with a model or a ConfigError."""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canary.errors import ConfigError
from canary.transactions import Transaction, load_transaction
from canary.transactions import templating as t

KEYS = [
    "transaction_name", "entrypoint_url", "steps", "method", "url", "payload", "payload_type",
    "expected_response_code", "response_validation", "jsonpath", "equals", "regex", "capture",
    "include", "retry", "finally", "headers", "status", "count", "eq", "lt", "group", "auth",
    "sla_success_threshold", "error_budget", "variables", "json_schema", "x",
]  # fmt: skip
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        ["GET", "post", "/", "$.a", "$[", "(a)\\1", "{{ x }}", "{{", "json", "form", 200]
    ),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=6)
    ),
    max_leaves=30,
)
BASE = {"transaction_name": "p", "entrypoint_url": "/", "steps": [{"method": "GET", "url": "/"}]}


def _load(text: str, suffix: str) -> Transaction | None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"t{suffix}"
        path.write_text(text)
        try:
            return load_transaction(path)
        except ConfigError as exc:
            assert exc.problems, "a ConfigError must say what is wrong"
            for p in exc.problems:
                assert p.line >= 1 and p.col >= 1 and p.message
            return None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_arbitrary_text_never_crashes(text: str) -> None:
    _load(text, ".yaml")
    _load(text, ".json")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_documents_never_crash(doc: Any) -> None:
    _load(json.dumps(doc), ".json")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS), json_values, max_size=4), st.integers(0, 3))
def test_mutated_valid_documents_never_crash(extra: dict[str, Any], where: int) -> None:
    doc: dict[str, Any] = json.loads(json.dumps(BASE))
    target = [doc, doc["steps"][0], doc, doc][where]
    target.update(extra)
    tx = _load(json.dumps(doc), ".json")
    if tx is not None:
        assert Transaction.model_validate(json.loads(json.dumps(tx.model_dump(mode="json")))) == tx


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_templates_parse_or_fail_cleanly(text: str) -> None:
    with contextlib.suppress(t.TemplateError):
        t.parse(text)
