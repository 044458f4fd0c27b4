"""The assertion engine and captures, on hand-made responses (no network)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from requests.structures import CaseInsensitiveDict

from canary.probing import assertions as a
from canary.probing.http import Response
from canary.transactions.models import Assertion, Capture
from canary.transactions.templating import Context


def resp(
    body: Any = b"", status: int = 200, headers: dict[str, str] | None = None, ms: float = 12.0
) -> Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Response(
        status, CaseInsensitiveDict(headers or {}), raw, False, ms, "http://t/", {"sid": "c1"}
    )


def check(spec: dict[str, Any], r: Response, **variables: Any) -> str | None:
    return a.check(Assertion.model_validate(spec), r, Context(variables=variables))


BODY = {
    "items": [{"sku": "A1", "n": 42}, {"sku": "B2", "n": 7}],
    "total": 49,
    "ok": True,
    "s": "42",
}


@pytest.mark.parametrize(
    "spec",
    [
        {"jsonpath": "$.items[0].sku", "equals": "A1"},
        {"jsonpath": "$.items[*].sku", "equals": "B2"},
        {"jsonpath": "$.items[*].n", "eq": 42},
        {"jsonpath": "$.s", "eq": "42"},
        {"jsonpath": "$.ok", "eq": True},
        {"jsonpath": "$.total"},
        {"jsonpath": "$.missing", "exists": False},
        {"jsonpath": "$.items[*]", "count": 2},
        {"jsonpath": "$.items[*]", "count": {"ge": 1, "lt": 3}},
        {"jsonpath": "$.items[?(@.n > 10)].sku", "eq": "A1"},
        {"jsonpath": "$.total", "gt": 40, "le": 49},
        {"jsonpath": "$.items[*].sku", "ne": "C3"},
        {"jsonpath": "$.items[0].sku", "matches": "^A\\d$"},
        {"jsonpath": "$.items", "contains": {"sku": "B2", "n": 7}},
        {"jsonpath": "$.items[0]", "contains": "sku"},
        {"jsonpath": "$.items[0].sku", "eq": "{{ want }}"},
        {"regex": '"total":\\s*[0-9]+'},
        {"regex": "total.:\\s*(\\d+)", "group": 1, "eq": 49},
        {"regex": "sku", "count": 2},
        {"status": 200},
        {"status": [200, 201]},
        {"status": {"lt": 300}},
        {"header": "content-type", "contains": "json"},
        {"header": "X-Count", "ge": 3},
        {"header": "X-Nope", "exists": False},
        {"response_time_ms": 100},
        {"response_time_ms": {"lt": 13}},
        {"body_size": {"gt": 10}},
        {
            "json_schema": {
                "type": "object",
                "required": ["items"],
                "properties": {"s": {"pattern": "^4"}},
            }
        },
    ],
)
def test_passing_checks(spec: dict[str, Any]) -> None:
    r = resp(BODY, headers={"Content-Type": "application/json", "X-Count": "3"})
    assert check(spec, r, want="A1") is None


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"jsonpath": "$.s", "equals": 42}, 'expected 42, found "42"'),
        ({"jsonpath": "$.total", "equals": "49"}, 'expected "49", found 49'),
        ({"jsonpath": "$.ok", "eq": 1}, "expected 1, found true"),
        ({"jsonpath": "$.missing"}, "expected it to exist, found nothing"),
        ({"jsonpath": "$.missing", "equals": 1}, "found nothing"),
        ({"jsonpath": "$.items[*]", "count": 3}, "expected 3 value(s), found 2"),
        ({"jsonpath": "$.total", "lt": 10}, "expected lt 10, found 49"),
        ({"jsonpath": "$.items[*].sku", "ne": "A1"}, 'expected no value equal to "A1"'),
        ({"regex": "nope"}, "expected it to exist, found nothing"),
        ({"status": 201}, "expected 201, got 200"),
        ({"status": {"ge": 300}}, "expected ge 300, got 200"),
        ({"header": "X-Nope"}, "expected it to exist"),
        ({"response_time_ms": 5}, "expected at most 5ms, got 12ms"),
        ({"json_schema": {"type": "array"}}, "at $: "),
        ({"json_schema": {"properties": {"s": {"pattern": "^x"}}}}, "at $['s']"),
    ],
)
def test_failing_checks_say_why(spec: dict[str, Any], reason: str) -> None:
    got = check(spec, resp(BODY))
    assert got is not None and reason in got, got


def test_non_json_body_fails_jsonpath_with_a_clear_reason() -> None:
    got = check({"jsonpath": "$.a"}, resp(b"<html>oops</html>"))
    assert got is not None and got.startswith("body is not JSON")
    assert "empty" in (check({"jsonpath": "$.a"}, resp(b"")) or "")


def test_seed_regex_is_searched_not_anchored() -> None:
    assert check({"regex": "b+c"}, resp(b"aaabbbcdd")) is None
    assert check({"regex": "^b"}, resp(b"abc")) is not None


def test_unset_template_variable_fails_the_check() -> None:
    assert "not set" in (check({"jsonpath": "$.s", "eq": "{{ nope }}"}, resp(BODY)) or "")


def test_captures() -> None:
    r = resp(BODY, headers={"Location": "/items/9"})
    assert a.capture("x", Capture(jsonpath="$.items[1].n"), r, {}) == (True, 7)
    assert a.capture("x", Capture(regex='"sku": "(\\w+)"'), r, {}) == (True, "A1")
    assert a.capture("x", Capture(regex='"sku": "\\w+"'), r, {}) == (True, '"sku": "A1"')
    assert a.capture("x", Capture(header="location"), r, {}) == (True, "/items/9")
    assert a.capture("x", Capture(cookie="sid"), r, {}) == (True, "c1")
    assert a.capture("x", Capture(cookie="jar"), r, {"jar": "j"}) == (True, "j")
    ok, why = a.capture("x", Capture(jsonpath="$.none"), r, {})
    assert not ok and why == "capture x: JSONPath $.none matched nothing"
    assert a.capture("x", Capture.model_validate({"jsonpath": "$.none", "default": 0}), r, {}) == (
        True,
        0,
    )


def test_json_equal_is_strict_about_types() -> None:
    assert a.json_equal(1, 1.0) and not a.json_equal(1, True) and not a.json_equal("1", 1)
    assert a.json_equal({"a": [1, None]}, {"a": [1, None]}) and not a.json_equal([1], [1, 2])


def test_assertion_shape_rules() -> None:
    with pytest.raises(ValidationError, match="exactly one of"):
        Assertion.model_validate({"eq": 1})
    with pytest.raises(ValidationError, match="cannot sit beside status"):
        Assertion.model_validate({"status": 200, "lt": 3})
    with pytest.raises(ValidationError, match="group 2 does not exist"):
        Assertion.model_validate({"regex": "(a)", "group": 2})


specs = st.fixed_dictionaries(
    {},
    optional={
        "jsonpath": st.sampled_from(
            ["$", "$.a", "$..b", "$[*]", "$.a[?(@.x > 1)]", "$.a[0]", "$.`len`"]
        ),
        "eq": st.one_of(
            st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2)
        ),
        "lt": st.floats(allow_nan=False, allow_infinity=False),
        "contains": st.one_of(st.integers(), st.text(max_size=3)),
        "matches": st.sampled_from(["a", "^$", "\\d+"]),
        "exists": st.booleans(),
        "count": st.integers(0, 3),
    },
)
bodies = st.one_of(
    st.binary(max_size=200),
    st.recursive(
        st.one_of(
            st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)
        ),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.sampled_from("abx"), inner, max_size=4)
        ),
        max_leaves=20,
    ).map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs, bodies, st.sampled_from(["jsonpath", "regex", "header"]))
def test_assertion_engine_never_raises(spec: dict[str, Any], body: bytes, subject: str) -> None:
    spec = dict(spec)
    if subject == "regex":
        spec.pop("jsonpath", None)
        spec["regex"] = "(\\w+)"
    elif subject == "header":
        spec.pop("jsonpath", None)
        spec["header"] = "X"
    else:
        spec.setdefault("jsonpath", "$")
    assertion = Assertion.model_validate(spec)
    r = resp(body, headers={"X": body[:10].decode("latin-1")})
    result = a.check(assertion, r, Context())
    assert result is None or isinstance(result, str)
    for cap in (Capture(jsonpath=spec.get("jsonpath", "$")), Capture(regex="(\\w)")):
        ok, _ = a.capture("v", cap, r, {})
        assert isinstance(ok, bool)
