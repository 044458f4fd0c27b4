"""JSON Schema checks of response bodies: RE2 for ``pattern``, and no ``$ref`` outside the schema.

jsonschema, left to itself, fetches a ``$ref`` it does not know with urllib and no timeout: a
probe would make a request nobody wrote, from the worker, and hang on a slow server. Every
reference must resolve inside the schema itself (``#/$defs/...`` or an embedded ``$id``); that
is checked at load time, and the validator's registry refuses to retrieve anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import SchemaError, ValidationError
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource, Unresolvable

from canary.transactions import expressions

_REF_KEYS = ("$ref", "$dynamicRef")


def _refuse(uri: str) -> Resource[Any]:
    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]


# jsonschema adds the meta-schemas of the drafts to this; nothing else is ever looked up.
_NO_RETRIEVAL: Registry[Any] = Registry(retrieve=_refuse)  # type: ignore[call-arg]


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
    refs: list[tuple[str, str]] = []
    ids: set[str] = set()
    stack: list[tuple[str, Any]] = [("", schema)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str):
                expressions.regex(node["pattern"])
            if isinstance(node.get("patternProperties"), dict):
                for p in node["patternProperties"]:
                    expressions.regex(p)
            if isinstance(node.get("$id"), str):
                ids.add(node["$id"].partition("#")[0])
            refs.extend(
                (f"{where}/{k}", node[k]) for k in _REF_KEYS if isinstance(node.get(k), str)
            )
            stack.extend((f"{where}/{k}", v) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((f"{where}/{i}", v) for i, v in enumerate(node))
    root = SafeValidator(schema, registry=_NO_RETRIEVAL)._resolver
    for where, ref in sorted(refs):
        if not ref.startswith("#") and ref.partition("#")[0] not in ids:
            raise ValueError(
                f"{where[1:]}: $ref {ref!r} points outside the schema, and schemas are never "
                "fetched: copy what it refers to under $defs and write '#/$defs/NAME'"
            )
        if ref.startswith("#") and not ids:
            try:
                root.lookup(ref)
            except Unresolvable:
                raise ValueError(f"{where[1:]}: $ref {ref!r} does not resolve") from None


def first_error(schema: dict[str, Any], instance: Any) -> str | None:
    """None when ``instance`` satisfies ``schema``, else the most relevant error in words."""
    try:
        validator = SafeValidator(schema, registry=_NO_RETRIEVAL)
        error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
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
