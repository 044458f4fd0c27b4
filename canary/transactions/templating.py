"""The template mini-language of definitions: parsing and rendering ``{{ ... }}`` safely."""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Deliberately tiny: a reference is a variable, env.NAME, secret.NAME or a built-in. There are no
# expressions, attribute walks or filters, so a definition can never make a worker run code.
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_REF = re.compile(
    rf"\s*(?:(env|secret)\.({IDENT})|({IDENT})(?:\(\s*(-?\d+)\s*,\s*(-?\d+)\s*\))?)\s*\Z"
)
_IDENT = re.compile(rf"{IDENT}\Z")

BUILTINS: dict[str, str] = {
    "uuid": "a random UUID (version 4), new at each use",
    "now": "the current Unix time in whole seconds",
    "timestamp": "same as now",
    "now_ms": "the current Unix time in milliseconds",
    "now_iso": "the current UTC time in ISO 8601, e.g. 2026-01-31T12:00:00Z",
    "random_int": "a random integer in [0, 2147483647]; random_int(A, B) picks in [A, B]",
}
RESERVED = frozenset({*BUILTINS, "env", "secret"})


class TemplateError(ValueError):
    """A template that cannot be parsed; ``offset`` is where in the string the problem starts."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset


class RenderError(Exception):
    """A template that cannot be rendered now (unset variable or environment variable)."""

    def __init__(self, message: str, variable: str | None = None) -> None:
        super().__init__(message)
        self.variable = variable


@dataclass(frozen=True, slots=True)
class Ref:
    """One ``{{ ... }}``: kind is 'var', 'env', 'secret' or 'builtin'."""

    kind: str
    name: str
    args: tuple[int, ...] = ()
    offset: int = 0


Part = str | Ref


def parse(text: str) -> list[Part]:
    """Split ``text`` into literal strings and references; raises TemplateError."""
    parts: list[Part] = []
    pos = 0
    while True:
        start = text.find("{{", pos)
        if start < 0:
            _append(parts, text[pos:])
            return parts
        end = text.find("}}", start + 2)
        if end < 0:
            raise TemplateError("'{{' is never closed by '}}'", start)
        _append(parts, text[pos:start])
        _append(parts, _parse_ref(text[start + 2 : end], start))
        pos = end + 2


def _append(parts: list[Part], part: Part) -> None:
    """Add a part, merging adjacent literals (so "a{{ '{{' }}" is one literal)."""
    if isinstance(part, str):
        if not part:
            return
        if parts and isinstance(parts[-1], str):
            parts[-1] += part
            return
    parts.append(part)


def _parse_ref(inner: str, offset: int) -> Part:
    quoted = inner.strip()
    if len(quoted) >= 2 and quoted[0] == quoted[-1] and quoted[0] in "'\"":
        # A quoted literal is how a definition writes a real "{{": {{ "{{" }}.
        return quoted[1:-1]
    m = _REF.match(inner)
    if not m:
        raise TemplateError(
            f"cannot understand '{{{{{inner}}}}}': expected a variable name, env.NAME, "
            f"secret.NAME or one of {', '.join(BUILTINS)}",
            offset,
        )
    space, scoped, name, lo, hi = m.groups()
    if space:
        return Ref(space, scoped, offset=offset)
    if lo is not None:
        if name != "random_int":
            raise TemplateError(f"only random_int takes arguments, not {name}", offset)
        a, b = int(lo), int(hi)
        if a > b:
            raise TemplateError(
                f"random_int({a}, {b}): the first bound must not exceed the second", offset
            )
        return Ref("builtin", name, (a, b), offset)
    return Ref("builtin" if name in BUILTINS else "var", name, offset=offset)


def refs(text: str) -> list[Ref]:
    """The references in ``text`` (raises TemplateError)."""
    return [p for p in parse(text) if isinstance(p, Ref)]


def is_var_name(name: str) -> bool:
    return bool(_IDENT.match(name))


@dataclass
class Context:
    """What templates of one run against one target can see."""

    variables: dict[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    now: Callable[[], float] = lambda: 0.0
    # Values that must never appear in results or logs; filled as secrets get rendered.
    secrets: set[str] = field(default_factory=set)

    def lookup(self, ref: Ref) -> Any:
        if ref.kind == "var":
            if ref.name not in self.variables:
                raise RenderError(
                    f"variable {ref.name!r} is not set (the step capturing it did not run)",
                    ref.name,
                )
            return self.variables[ref.name]
        if ref.kind in ("env", "secret"):
            value = self.env.get(ref.name)
            if value is None:
                raise RenderError(
                    f"environment variable {ref.name} is not set (needed by {ref.kind}.{ref.name})"
                )
            if ref.kind == "secret" and value:
                self.secrets.add(value)
            return value
        return _builtin(ref, self.now)


def _builtin(ref: Ref, now: Callable[[], float]) -> Any:
    if ref.name == "uuid":
        return str(uuid.uuid4())
    if ref.name in ("now", "timestamp"):
        return int(now())
    if ref.name == "now_ms":
        return int(now() * 1000)
    if ref.name == "now_iso":
        return datetime.fromtimestamp(now(), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lo, hi = ref.args or (0, 2**31 - 1)
    return random.randint(lo, hi)


def to_text(value: Any) -> str:
    """How a non-string value is spliced into a string: as JSON (true, null, [1, 2])."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def render(text: str, ctx: Context) -> Any:
    """Render one string. A string that is exactly one reference keeps the value's type."""
    if "{{" not in text:
        return text
    parts = parse(text)
    if len(parts) == 1 and isinstance(parts[0], Ref):
        return ctx.lookup(parts[0])
    return "".join(p if isinstance(p, str) else to_text(ctx.lookup(p)) for p in parts)


def render_str(text: str, ctx: Context) -> str:
    return to_text(render(text, ctx))


def render_value(value: Any, ctx: Context) -> Any:
    """Render every string inside a JSON-like value (mapping keys become strings)."""
    if isinstance(value, str):
        return render(value, ctx)
    if isinstance(value, dict):
        return {render_str(str(k), ctx): render_value(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, ctx) for v in value]
    return value


def walk_strings(
    value: Any, path: tuple[str | int, ...] = ()
) -> list[tuple[tuple[str | int, ...], str]]:
    """Every string (values and keys) inside a JSON-like value, with its path."""
    out: list[tuple[tuple[str | int, ...], str]] = []
    stack: list[tuple[tuple[str | int, ...], Any]] = [(path, value)]
    while stack:
        p, v = stack.pop()
        if isinstance(v, str):
            out.append((p, v))
        elif isinstance(v, dict):
            for k, item in v.items():
                if isinstance(k, str) and "{{" in k:
                    out.append(((*p, k), k))
                stack.append(((*p, k), item))
        elif isinstance(v, list):
            stack.extend(((*p, i), item) for i, item in enumerate(v))
    out.reverse()
    return out
