"""Checking responses against assertions and pulling captures out of them; failures are reasons."""

from __future__ import annotations

import json
import math
from typing import Any

from canary.probing.http import Response
from canary.transactions import expressions
from canary.transactions.jsonschema_check import first_error
from canary.transactions.models import Assertion, Capture, Compare
from canary.transactions.templating import Context, RenderError, render_value, to_text

MAX_SHOWN = 200
MAX_REGEX_MATCHES = 1000
_TEXT_SUBJECTS = ("header", "regex")


def shown(value: Any) -> str:
    """A value as an operator reads it in an error: JSON, cut to MAX_SHOWN characters."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "…"


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values: 42 != "42", true != 1, 1 == 1.0, containers compared deeply."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


def _number(value: Any, text: bool) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if text and isinstance(value, str):
        try:
            n = float(value.strip())
        except ValueError:
            return None
        return n if math.isfinite(n) else None
    return None


def compare(value: float, cmp: Compare) -> str | None:
    """None when every comparison given holds, else the first that does not."""
    for op, bound in (
        ("eq", cmp.eq),
        ("ne", cmp.ne),
        ("lt", cmp.lt),
        ("le", cmp.le),
        ("gt", cmp.gt),
        ("ge", cmp.ge),
    ):
        if bound is not None and not _holds(op, value, bound):
            return f"expected {op} {bound:g}, got {value:g}"
    return None


def _holds(op: str, a: float, b: float) -> bool:
    return {
        "eq": a == b,
        "ne": a != b,
        "lt": a < b,
        "le": a <= b,
        "gt": a > b,
        "ge": a >= b,
    }[op]


def describe(a: Assertion) -> str:
    subject = a.subject
    if subject in ("header", "jsonpath", "regex"):
        return f"{subject} {getattr(a, subject)}"
    return subject


def check(a: Assertion, resp: Response, ctx: Context) -> str | None:
    """None when the response satisfies ``a``; otherwise why not, with the actual value."""
    try:
        return _check(a, resp, ctx)
    except RenderError as exc:
        return str(exc)
    except RecursionError:
        return "value nested too deeply to check"
    except Exception as exc:  # e.g. a JSONPath filter comparing mismatched types
        return f"cannot evaluate: {type(exc).__name__}: {shown(str(exc))}"


def _check(a: Assertion, resp: Response, ctx: Context) -> str | None:
    subject = a.subject
    if subject == "status":
        return _status(a, resp.status)
    if subject == "response_time_ms":
        return _bound(a.response_time_ms, resp.elapsed_ms, "ms")
    if subject == "body_size":
        note = " (truncated)" if resp.truncated else ""
        why = _bound(a.body_size, len(resp.body), " bytes")
        return why + note if why else None
    if subject == "json_schema":
        ok, data, reason = resp.json()
        if not ok:
            return reason
        assert a.json_schema is not None
        return first_error(a.json_schema, data)
    values: list[Any]
    if subject == "header":
        assert a.header is not None
        values = [resp.headers[a.header]] if a.header in resp.headers else []
    elif subject == "jsonpath":
        ok, data, reason = resp.json()
        if not ok:
            return reason
        assert a.jsonpath is not None
        values = [m.value for m in expressions.jsonpath(a.jsonpath).find(data)]
    else:
        assert a.regex is not None
        values = _regex_values(a.regex, a.group, resp.text)
    return _ops(a, values, ctx)


def _status(a: Assertion, status: int) -> str | None:
    want = a.status
    if isinstance(want, Compare):
        return compare(status, want)
    codes = want if isinstance(want, list) else [want]
    return None if status in codes else f"expected {shown(want)}, got {status}"


def _bound(want: float | Compare | None, value: float, unit: str) -> str | None:
    if isinstance(want, Compare):
        return compare(value, want)
    if want is not None and value > want:
        return f"expected at most {want:g}{unit}, got {value:.0f}{unit}"
    return None


def _regex_values(pattern: str, group: int | str | None, text: str) -> list[Any]:
    compiled = expressions.regex(pattern)
    out: list[Any] = []
    for m in compiled.finditer(text):
        out.append(m.group(group if group is not None else 0))
        if len(out) >= MAX_REGEX_MATCHES:
            break
    return out


def _ops(a: Assertion, values: list[Any], ctx: Context) -> str | None:
    text = a.subject in _TEXT_SUBJECTS
    found = f"found {shown(values if len(values) != 1 else values[0])}"
    if a.given("exists") and bool(values) != a.exists:
        return (
            "expected it to be absent, " + found
            if values
            else "expected it to exist, found nothing"
        )
    if a.given("count") and a.count is not None:
        n = len(values)
        if isinstance(a.count, Compare):
            why = compare(n, a.count)
            if why:
                return f"count: {why}"
        elif n != a.count:
            return f"expected {a.count} value(s), found {n}"
    value_ops = [
        op
        for op in ("eq", "equals", "ne", "lt", "le", "gt", "ge", "contains", "matches")
        if a.given(op)
    ]
    if not value_ops and not a.given("exists") and not a.given("count"):
        return None if values else "expected it to exist, found nothing"
    if not value_ops:
        return None
    if not values and value_ops != ["ne"]:
        return "found nothing"
    for op in value_ops:
        operand = (
            render_value(getattr(a, op), ctx)
            if op in ("eq", "equals", "ne", "contains")
            else getattr(a, op)
        )
        why = _op(op, operand, values, text)
        if why:
            return f"{why}, {found}"
    return None


def _op(op: str, operand: Any, values: list[Any], text: bool) -> str | None:
    if op in ("eq", "equals", "ne"):
        same = any(_equal(v, operand, text) for v in values)
        if op == "ne":
            return f"expected no value equal to {shown(operand)}" if same else None
        return None if same else f"expected {shown(operand)}"
    if op in ("lt", "le", "gt", "ge"):
        numbers = [n for n in (_number(v, text) for v in values) if n is not None]
        if not numbers:
            return f"expected a number {op} {operand:g}"
        return (
            None if any(_holds(op, n, operand) for n in numbers) else f"expected {op} {operand:g}"
        )
    if op == "contains":
        return (
            None
            if any(_contains(v, operand, text) for v in values)
            else f"expected to contain {shown(operand)}"
        )
    compiled = expressions.regex(operand)
    hit = any(isinstance(v, str) and compiled.search(v) for v in values)
    return None if hit else f"expected a string matching {shown(operand)}"


def _equal(value: Any, operand: Any, text: bool) -> bool:
    # Header and regex values are text, so compare them with the operand's text form.
    return (
        value == to_text(operand) if text and isinstance(value, str) else json_equal(value, operand)
    )


def _contains(value: Any, operand: Any, text: bool) -> bool:
    if isinstance(value, str):
        return to_text(operand) in value
    if isinstance(value, list):
        return any(json_equal(v, operand) for v in value)
    if isinstance(value, dict):
        return isinstance(operand, str) and operand in value
    return False


def capture(
    name: str, cap: Capture, resp: Response, jar_cookies: dict[str, str]
) -> tuple[bool, Any]:
    """(True, value) or (False, reason). ``jar_cookies`` are the run's cookies after the request."""
    try:
        value = _capture(cap, resp, jar_cookies)
    except Exception as exc:  # a JSONPath filter on odd data, and the like
        return False, f"capture {name}: cannot evaluate: {type(exc).__name__}"
    if isinstance(value, _Missing):
        if cap.given("default"):
            return True, cap.default
        return False, f"capture {name}: {value.reason}"
    return True, value


class _Missing:
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _capture(cap: Capture, resp: Response, jar_cookies: dict[str, str]) -> Any:
    if cap.jsonpath is not None:
        ok, data, reason = resp.json()
        if not ok:
            return _Missing(reason)
        matches = expressions.jsonpath(cap.jsonpath).find(data)
        return matches[0].value if matches else _Missing(f"JSONPath {cap.jsonpath} matched nothing")
    if cap.regex is not None:
        compiled = expressions.regex(cap.regex)
        m = compiled.search(resp.text)
        if not m:
            return _Missing(f"regex {shown(cap.regex)} not found in the body")
        group = cap.group if cap.group is not None else (1 if compiled.groups else 0)
        return m.group(group)
    if cap.header is not None:
        return (
            resp.headers[cap.header]
            if cap.header in resp.headers
            else _Missing(f"no {cap.header} header")
        )
    assert cap.cookie is not None
    if cap.cookie in resp.cookies:
        return resp.cookies[cap.cookie]
    return (
        jar_cookies[cap.cookie]
        if cap.cookie in jar_cookies
        else _Missing(f"no cookie {cap.cookie}")
    )
