"""Reading user files (YAML or JSON) with the line and column of every value, and validating them.

Every definition and configuration goes through here so that each problem is reported as
``FILE:LINE:COL: field.path: message``, all at once, for YAML and JSON alike.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from canary.errors import ConfigError, Problem

MAX_FILE_BYTES = 1 << 20
# Aliases let a tiny YAML file name a huge tree ("billion laughs"); we refuse to expand past this.
MAX_NODES = 100_000
# Readers of a document (PyYAML's composer, our walkers, pydantic, templating) recurse per level;
# real definitions nest a dozen levels, so far below Python's recursion limit is plenty.
MAX_DEPTH = 100

PathT = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


@dataclass
class Document:
    """Parsed data plus where each path starts in the file (1-based line and column)."""

    file: str
    data: Any
    values: dict[PathT, tuple[int, int]] = field(default_factory=dict)
    keys: dict[PathT, tuple[int, int]] = field(default_factory=dict)

    def where(self, path: PathT, *, key: bool = False) -> tuple[int, int]:
        """Position of ``path`` (its key when ``key``), else of its nearest known ancestor."""
        p = tuple(path)
        while True:
            table = self.keys if key and p in self.keys else self.values
            if p in table:
                return table[p]
            if not p:
                return (1, 1)
            p = p[:-1]

    def problem(self, path: PathT, message: str, *, key: bool = False) -> Problem:
        line, col = self.where(path, key=key)
        return Problem(self.file, line, col, format_path(path), message)


def format_path(path: PathT) -> str:
    """``("steps", 2, "url")`` → ``steps[2].url``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def read_text(path: str | Path) -> str:
    """A user's file as text, with a ConfigError (not a traceback) when it cannot be read."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(
                [Problem(str(path), 1, 1, "", f"file is {size} bytes; at most {MAX_FILE_BYTES}")]
            )
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(str(path), 1, 1, "", "no such file")]) from None
    except IsADirectoryError:
        raise ConfigError([Problem(str(path), 1, 1, "", "is a directory, not a file")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [Problem(str(path), 1, 1, "", f"not UTF-8 text ({exc.reason})")]
        ) from None
    except OSError as exc:
        raise ConfigError([Problem(str(path), 1, 1, "", f"cannot read: {exc.strerror}")]) from None


def load_document(path: str | Path, text: str | None = None) -> Document:
    """Parse a YAML or JSON file (JSON when it ends in .json or starts with '{' or '[')."""
    name = str(path)
    if text is None:
        text = read_text(path)
    stripped = text.lstrip()
    if name.endswith(".json") or (
        stripped.startswith(("{", "[")) and not name.endswith((".yaml", ".yml"))
    ):
        return parse_json(name, text)
    return parse_yaml(name, text)


# --- YAML -------------------------------------------------------------------------------------


def _too_deep(name: str, line: int, col: int) -> ConfigError:
    return ConfigError(
        [
            Problem(
                name, line, col, "", f"nested deeper than {MAX_DEPTH} levels of lists and mappings"
            )
        ]
    )


class _SafeLoader(yaml.SafeLoader):
    """The safe loader, refusing to compose nodes nested deeper than MAX_DEPTH."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(text)
        self.name = name
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if not self.check_event(yaml.CollectionStartEvent):
            return super().compose_node(parent, index)
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _too_deep(self.name, mark.line + 1, mark.column + 1)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def parse_yaml(name: str, text: str) -> Document:
    """Parse YAML with the safe loader only; positions come from the node tree."""
    try:
        # The reader rejects control characters as soon as it is built, so build it in here.
        loader = _SafeLoader(name, text)
    except yaml.reader.ReaderError as exc:
        pos = max(0, min(exc.position, len(text)))
        line, col = text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1
        msg = f"invalid YAML: unacceptable character #x{exc.character:04x}: {exc.reason}"
        raise ConfigError([Problem(name, line, col, "", msg)]) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError([Problem(name, 1, 1, "", "the file is empty")])
        doc = Document(name, None)
        problems: list[Problem] = []
        _walk_yaml(node, (), doc, problems, [0])
        if problems:
            raise ConfigError(problems)
        doc.data = loader.construct_document(node)
        return doc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        msg = " ".join(x for x in (exc.context, exc.problem) if x) or "invalid YAML"
        if "could not determine a constructor" in msg:
            msg = "YAML tags that construct objects are not allowed: " + msg
        raise ConfigError([Problem(name, line, col, "", f"invalid YAML: {msg}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(name, 1, 1, "", f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()


def _walk_yaml(
    node: yaml.Node, path: PathT, doc: Document, problems: list[Problem], count: list[int]
) -> None:
    count[0] += 1
    if count[0] > MAX_NODES:
        raise ConfigError(
            [Problem(doc.file, 1, 1, "", f"document expands to more than {MAX_NODES} values")]
        )
    doc.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.CollectionNode) and len(path) >= MAX_DEPTH:
        # Aliases can stack shallow nodes into a deep (or endless) tree.
        raise _too_deep(doc.file, *doc.values[path])
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            if key == "<<":  # merge keys: positions of merged values stay with their anchor
                continue
            child = (*path, key)
            doc.keys[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in seen:
                problems.append(doc.problem(child, "duplicate key", key=True))
            seen.add(key)
            _walk_yaml(value_node, child, doc, problems, count)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk_yaml(item, (*path, i), doc, problems, count)


# --- JSON -------------------------------------------------------------------------------------

_WS = re.compile(r"[ \t\n\r]*")
_NESTING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?")


def parse_json(name: str, text: str) -> Document:
    """Parse strict JSON; a second pass over the text records where each value starts."""
    dupes: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in items:
            if k in out:
                dupes.append(k)
            out[k] = v
        return out

    try:
        data = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            [Problem(name, exc.lineno, exc.colno, "", f"invalid JSON: {exc.msg}")]
        ) from None
    except RecursionError:
        raise _too_deep_json(name, text) from None
    doc = Document(name, data)
    lines = _LineIndex(text)
    # Positions are a courtesy: json.loads above is the authority on validity.
    seen_twice: list[PathT] = []
    with contextlib.suppress(ValueError, IndexError, RecursionError):
        _scan_json(text, _WS.match(text, 0).end(), (), doc, lines, seen_twice)  # type: ignore[union-attr]
    if seen_twice:  # the scan found where: point at each repeated key
        raise ConfigError(
            [doc.problem(p, f"duplicate key {p[-1]!r}", key=True) for p in seen_twice]
        )
    if dupes:
        raise ConfigError([doc.problem((), f"duplicate key {k!r}") for k in dupes])
    return doc


def _too_deep_json(name: str, text: str) -> ConfigError:
    """The error for JSON nested past MAX_DEPTH, at the first bracket past it."""
    depth = 0
    for m in _NESTING.finditer(text):
        ch = m.group()
        if ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return _too_deep(name, *_LineIndex(text).at(m.start()))
        elif ch in "]}":
            depth -= 1
    return _too_deep(name, 1, 1)


class _LineIndex:
    def __init__(self, text: str) -> None:
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def at(self, offset: int) -> tuple[int, int]:
        import bisect

        i = bisect.bisect_right(self.starts, offset) - 1
        return (i + 1, offset - self.starts[i] + 1)


def _scan_json(
    text: str, i: int, path: PathT, doc: Document, lines: _LineIndex, dupes: list[PathT]
) -> int:
    """Record the position of the value at ``i`` and its children; return the index after it."""
    doc.values[path] = lines.at(i)
    ch = text[i]
    if ch in "{[" and len(path) >= MAX_DEPTH:
        # The scan is the one pass over every value: checking the depth here costs nothing.
        raise _too_deep(doc.file, *doc.values[path])
    if ch == "{":
        i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
        if text[i] == "}":
            return i + 1
        while True:
            key_at = i
            key, i = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
            child = (*path, key)
            if child in doc.keys:
                dupes.append(child)
            doc.keys[child] = lines.at(key_at)
            i = _WS.match(text, i).end()  # type: ignore[union-attr]
            i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]  # past ':'
            i = _scan_json(text, i, child, doc, lines, dupes)
            i = _WS.match(text, i).end()  # type: ignore[union-attr]
            if text[i] == "}":
                return i + 1
            i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]  # past ','
    if ch == "[":
        i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
        if text[i] == "]":
            return i + 1
        n = 0
        while True:
            i = _scan_json(text, i, (*path, n), doc, lines, dupes)
            n += 1
            i = _WS.match(text, i).end()  # type: ignore[union-attr]
            if text[i] == "]":
                return i + 1
            i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
    if ch == '"':
        return int(json.decoder.scanstring(text, i + 1)[1])  # type: ignore[attr-defined]
    for literal in ("true", "false", "null", "NaN", "Infinity", "-Infinity"):
        if text.startswith(literal, i):
            return i + len(literal)
    m = _NUMBER.match(text, i)
    if not m:
        raise ValueError("unexpected character")
    return m.end()


# --- validation against a model ---------------------------------------------------------------


def parse_model(model: type[M], doc: Document, *, context: dict[str, Any] | None = None) -> M:
    """Validate ``doc.data`` as ``model``; every problem is raised at once with its position."""
    try:
        return model.model_validate(doc.data, context={"document": doc, **(context or {})})
    except ValidationError as exc:
        raise ConfigError(problems_from(exc, doc, model)) from None


def problems_from(exc: ValidationError, doc: Document, model: type[BaseModel]) -> list[Problem]:
    """Turn pydantic's errors into Problems that point into the user's file."""
    problems: list[Problem] = []
    mismatches: list[tuple[PathT, Problem]] = []
    paths: list[PathT] = []
    schema: dict[str, Any] | None = None
    for err in exc.errors(include_url=False):
        kind = err["type"]
        path = data_path(doc.data, err["loc"], missing=kind == "missing")
        paths.append(path)
        if kind == "extra_forbidden":
            if schema is None:
                schema = model.model_json_schema()
            allowed = sorted(allowed_keys(schema, path[:-1], doc.data))
            key = str(path[-1]) if path else ""
            hint = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            msg = f"unknown field {key!r}"
            msg += (
                f"; did you mean {hint[0]!r}?"
                if hint
                else (f"; known fields: {', '.join(allowed)}" if allowed else "")
            )
            problems.append(doc.problem(path, msg, key=True))
            continue
        msg = str(err["msg"])
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        elif msg.startswith("Assertion failed, "):
            msg = msg[len("Assertion failed, ") :]
        if kind == "missing":
            msg = "is required"
        # A mapping's key that is itself invalid (a header name, say): point at the key.
        on_key = err["loc"][-1:] == ("[key]",)
        problem = doc.problem(path, msg[:1].lower() + msg[1:] if msg else "is invalid", key=on_key)
        if kind.endswith("_type"):
            mismatches.append((path, problem))
        problems.append(problem)
    # A union (say, a weight or a pause) reports "not an int" for the branch the user did not
    # mean next to the real faults inside the branch they did: the deeper faults are the news.
    for path, problem in mismatches:
        if any(len(q) > len(path) and q[: len(path)] == path for q in paths):
            problems.remove(problem)
    # One message per place is enough: unions report the same fault once per branch.
    unique: dict[tuple[int, int, str, str], Problem] = {}
    for p in problems:
        unique.setdefault((p.line, p.col, p.path, p.message), p)
    return sorted(unique.values(), key=lambda p: (p.line, p.col))


def data_path(data: Any, loc: tuple[Any, ...], *, missing: bool = False) -> PathT:
    """Keep only the parts of pydantic's ``loc`` that walk the user's data (drops union tags).

    With ``missing`` the last part is a required key that is absent, and is kept.
    """
    out: list[str | int] = []
    cur = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(cur, dict) and isinstance(part, str) and (part in cur or (last and missing)):
            out.append(part)
            cur = cur.get(part)
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            out.append(part)
            cur = cur[part]
    return tuple(out)


def allowed_keys(schema: dict[str, Any], path: PathT, data: Any) -> set[str]:
    """Field names the JSON Schema allows for the object at ``path`` (union of all branches)."""
    defs = schema.get("$defs", {})

    def resolve(s: dict[str, Any]) -> Iterator[dict[str, Any]]:
        if "$ref" in s:
            yield from resolve(defs.get(s["$ref"].split("/")[-1], {}))
            return
        branches = s.get("anyOf") or s.get("oneOf") or s.get("allOf")
        if branches:
            for b in branches:
                yield from resolve(b)
            return
        yield s

    nodes = list(resolve(schema))
    for part in path:
        nxt: list[dict[str, Any]] = []
        for n in nodes:
            if isinstance(part, int) and "items" in n:
                nxt.extend(resolve(n["items"]))
            elif isinstance(part, str):
                if part in n.get("properties", {}):
                    nxt.extend(resolve(n["properties"][part]))
                elif isinstance(n.get("additionalProperties"), dict):
                    nxt.extend(resolve(n["additionalProperties"]))
        nodes = nxt
    keys: set[str] = set()
    for n in nodes:
        keys.update(n.get("properties", {}))
    return keys


def load_model(model: type[M], path: str | Path, *, context: dict[str, Any] | None = None) -> M:
    """Read, parse and validate one file as ``model``."""
    return parse_model(model, load_document(path), context=context)
