"""JSON Schema checks of response bodies, with RE2 for ``pattern`` so none can hang a worker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import SchemaError, ValidationError

from canary.transactions import expressions


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string"):
        try:
            found = expressions.regex(pattern).search(instance)
        except expressions.ExpressionError as exc:
            yield ValidationError(str(exc))
            return
        if not found:
            yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: dict[str, Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        try:
            compiled = expressions.regex(pattern)
        except expressions.ExpressionError as exc:
            yield ValidationError(str(exc))
            continue
        for key, value in instance.items():
            if compiled.search(key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


# The stock validator uses Python's backtracking ``re``; a hostile pattern could pin a CPU.
SafeValidator = validators.extend(
    Draft202012Validator, {"pattern": _pattern, "patternProperties": _pattern_properties}
)


def check_schema(schema: dict[str, Any]) -> None:
    """Raise ValueError when ``schema`` is not a valid JSON Schema or has a pattern RE2 refuses."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        raise ValueError(
            f"not a valid JSON Schema{f' at {where}' if where else ''}: {exc.message}"
        ) from None
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str):
                expressions.regex(node["pattern"])
            if isinstance(node.get("patternProperties"), dict):
                for p in node["patternProperties"]:
                    expressions.regex(p)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def first_error(schema: dict[str, Any], instance: Any) -> str | None:
    """None when ``instance`` satisfies ``schema``, else the most relevant error in words."""
    try:
        error = jsonschema.exceptions.best_match(SafeValidator(schema).iter_errors(instance))
    except (RecursionError, jsonschema.exceptions.SchemaError) as exc:
        return f"cannot check against the schema: {type(exc).__name__}"
    except Exception as exc:  # unresolvable $ref and the like: the definition's fault, not a crash
        return f"cannot check against the schema: {exc}"
    if error is None:
        return None
    where = "$" + "".join(
        f"[{p!r}]" if isinstance(p, str) else f"[{p}]" for p in error.absolute_path
    )
    return f"at {where}: {error.message}"
