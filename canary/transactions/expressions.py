"""Compiling the JSONPath expressions and regular expressions of definitions, once and safely."""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from typing import Any

import re2
from jsonpath_ng.ext import parse as _jsonpath_parse

MAX_EXPRESSION = 2000
_POS = re.compile(r"at (\d+):(\d+)")
# The PLY-based JSONPath parser keeps state while parsing; one parse at a time, results cached.
_jsonpath_lock = threading.Lock()
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # otherwise re2 prints every bad user pattern on stderr
_RE2_OPTIONS.max_mem = 8 << 20


class ExpressionError(ValueError):
    """An expression that does not compile, with a readable reason."""


@lru_cache(maxsize=4096)
def _jsonpath_cached(expr: str) -> Any:
    with _jsonpath_lock:
        return _jsonpath_parse(expr)


def jsonpath(expr: str) -> Any:
    """A compiled JSONPath (extended jsonpath-ng syntax); raises ExpressionError."""
    if not expr.strip():
        raise ExpressionError("JSONPath is empty")
    if len(expr) > MAX_EXPRESSION:
        raise ExpressionError(f"JSONPath is longer than {MAX_EXPRESSION} characters")
    try:
        return _jsonpath_cached(expr)
    except RecursionError:
        raise ExpressionError("JSONPath is nested too deeply") from None
    except Exception as exc:  # the parser raises several unrelated exception types
        msg = str(exc).strip() or type(exc).__name__
        m = _POS.search(msg)
        where = f" (at column {m.group(2)})" if m else ""
        raise ExpressionError(f"invalid JSONPath{where}: {msg}") from None


@lru_cache(maxsize=4096)
def _regex_cached(pattern: str) -> Any:
    return re2.compile(pattern, options=_RE2_OPTIONS)


def regex(pattern: str) -> Any:
    """A compiled RE2 pattern (linear time: a definition cannot hang a worker)."""
    if len(pattern) > MAX_EXPRESSION:
        raise ExpressionError(f"regular expression is longer than {MAX_EXPRESSION} characters")
    try:
        return _regex_cached(pattern)
    except Exception as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ExpressionError(
            f"regular expression not supported by RE2 ({reason}); RE2 has no backreferences "
            "or look-around, which keeps matching linear in time"
        ) from None


def regex_groups(pattern: str) -> tuple[int, set[str]]:
    """How many groups a valid pattern has, and its group names."""
    compiled = regex(pattern)
    return int(compiled.groups), set(compiled.groupindex)
