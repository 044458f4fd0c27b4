"""Loading a definition file: includes, validation and cross-field rules, every problem at once."""

from __future__ import annotations

import datetime as dt
import difflib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from canary.documents import Document, PathT, load_document, parse_model, problems_from
from canary.errors import ConfigError, Problem
from canary.transactions import templating
from canary.transactions.models import StepsFile, Transaction, TransactionFile

MAX_INCLUDE_DEPTH = 8
MAX_STEPS = 200
# Fields whose strings are templates; everything else is taken literally.
_ASSERTION_OPERANDS = ("eq", "equals", "ne", "contains")


@dataclass(frozen=True)
class Located:
    """A raw step and where it was written (its own file for included steps)."""

    data: Any
    doc: Document
    path: PathT


def load_transaction(path: str | Path) -> Transaction:
    """Read, expand and validate a definition; raises ConfigError listing every problem."""
    try:
        return _Loader().load(str(path))
    except RecursionError:
        raise ConfigError([Problem(str(path), 1, 1, "", "nested too deeply")]) from None


class _Loader:
    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.files: list[str] = []

    def load(self, name: str) -> Transaction:
        doc = load_document(name)
        self.files.append(doc.file)
        if not isinstance(doc.data, dict):
            msg = "a transaction is a mapping with transaction_name, entrypoint_url and steps"
            raise ConfigError([doc.problem((), msg)])
        self._validate(TransactionFile, doc)
        self._check_plain(doc)
        here = [Path(name).resolve()]
        steps = self._expand(doc, ("steps",), here)
        final = self._expand(doc, ("finally",), here)
        if len(steps) + len(final) > MAX_STEPS:
            self.problems.append(
                doc.problem(("steps",), f"more than {MAX_STEPS} steps after includes")
            )
        _Checker(doc, self.problems).run(steps, final)
        if self.problems:
            raise ConfigError(self._sorted())
        data = {k: v for k, v in doc.data.items() if k not in ("steps", "finally")}
        data["steps"] = [s.data for s in steps]
        if "finally" in doc.data:
            data["finally"] = [s.data for s in final]
        try:
            return Transaction.model_validate(data)
        except ValidationError as exc:  # pragma: no cover - every part was validated above
            raise ConfigError(problems_from(exc, doc, Transaction)) from None

    def _validate(self, model: type[TransactionFile] | type[StepsFile], doc: Document) -> None:
        try:
            parse_model(model, doc)
        except ConfigError as exc:
            self.problems.extend(exc.problems)

    def _check_plain(self, doc: Document) -> None:
        """YAML turns unquoted dates and !!binary into Python objects JSON cannot carry."""
        stack: list[tuple[PathT, Any]] = [((), doc.data)]
        while stack:
            path, value = stack.pop()
            if isinstance(value, dict):
                for k in value:
                    if isinstance(k, bool) or k is None:
                        msg = f"YAML reads this key as {k!r} (yes/no/on/off/null); quote it"
                        self.problems.append(doc.problem((*path, str(k)), msg, key=True))
                stack.extend(((*path, str(k)), v) for k, v in value.items())
            elif isinstance(value, list):
                stack.extend(((*path, i), v) for i, v in enumerate(value))
            elif isinstance(value, dt.date | dt.datetime):
                self.problems.append(
                    doc.problem(path, "YAML read this as a date; quote it to keep a string")
                )
            elif isinstance(value, bytes | set | tuple):
                self.problems.append(
                    doc.problem(path, "only strings, numbers, booleans, null, lists and mappings")
                )

    def _expand(self, doc: Document, key: PathT, stack: list[Path]) -> list[Located]:
        items = doc.data.get(key[0]) if isinstance(doc.data, dict) else None
        if not isinstance(items, list):
            return []
        out: list[Located] = []
        for i, item in enumerate(items):
            path = (*key, i)
            if isinstance(item, dict) and "include" in item:
                out.extend(self._include(doc, path, item.get("include"), stack))
            else:
                out.append(Located(item, doc, path))
        return out

    def _include(self, doc: Document, path: PathT, target: Any, stack: list[Path]) -> list[Located]:
        if not isinstance(target, str) or not target:
            return []  # the model check has reported it
        where = (*path, "include")
        shown = os.path.normpath(os.path.join(os.path.dirname(doc.file), target))
        real = Path(shown).resolve()
        if real in stack:
            chain = " → ".join([*(p.name for p in stack[stack.index(real) :]), real.name])
            self.problems.append(doc.problem(where, f"include cycle: {chain}"))
            return []
        if len(stack) > MAX_INCLUDE_DEPTH:
            self.problems.append(
                doc.problem(where, f"includes nest deeper than {MAX_INCLUDE_DEPTH}")
            )
            return []
        if not real.is_file():
            self.problems.append(
                doc.problem(where, f"cannot include {target!r}: no such file ({shown})")
            )
            return []
        try:
            sub = load_document(shown)
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            return []
        self.files.append(sub.file)
        if not isinstance(sub.data, dict):
            self.problems.append(
                sub.problem((), "an included file is a mapping with a 'steps' list")
            )
            return []
        self._validate(StepsFile, sub)
        self._check_plain(sub)
        return self._expand(sub, ("steps",), [*stack, real])

    def _sorted(self) -> list[Problem]:
        order = {f: i for i, f in enumerate(self.files)}
        unique = {(p.file, p.line, p.col, p.path, p.message): p for p in self.problems}
        return sorted(unique.values(), key=lambda p: (order.get(p.file, len(order)), p.line, p.col))


class _Checker:
    """Rules that span fields: templates parse, variables exist before use, names are unique."""

    def __init__(self, doc: Document, problems: list[Problem]) -> None:
        self.doc = doc
        self.problems = problems

    def run(self, steps: list[Located], final: list[Located]) -> None:
        data = self.doc.data
        initial = data.get("variables")
        known = {k for k in initial if isinstance(k, str)} if isinstance(initial, dict) else set()
        if isinstance(initial, dict):
            for key, value in initial.items():
                self._strings(self.doc, ("variables", str(key)), value, set(), "variables")
        self._strings(
            self.doc, ("entrypoint_url",), data.get("entrypoint_url"), known, "entrypoint_url"
        )
        self._strings(self.doc, ("headers",), data.get("headers"), known, "headers")
        self._strings(self.doc, ("auth",), data.get("auth"), known, "headers")
        for loc in steps:
            self._step(loc, known)
            known |= _captures(loc.data)
        # Teardown may use any capture; at run time it fails if the capturing step did not run.
        every = set(known)
        for loc in final:
            self._step(loc, every)
            every |= _captures(loc.data)
        self._unique_names([*steps, *final])

    def _step(self, loc: Located, known: set[str]) -> None:
        step = loc.data
        if not isinstance(step, dict):
            return
        for key in ("url", "query", "headers", "auth", "payload"):
            self._strings(loc.doc, (*loc.path, key), step.get(key), known, key)
        checks = step.get("response_validation")
        if isinstance(checks, list):
            for i, check in enumerate(checks):
                if isinstance(check, dict):
                    for op in _ASSERTION_OPERANDS:
                        path = (*loc.path, "response_validation", i, op)
                        self._strings(loc.doc, path, check.get(op), known, op)

    def _strings(self, doc: Document, path: PathT, value: Any, known: set[str], field: str) -> None:
        if value is None:
            return
        for sub, text in templating.walk_strings(value, path):
            try:
                refs = templating.refs(text)
            except templating.TemplateError as exc:
                self._add(doc, sub, str(exc))
                continue
            for ref in refs:
                if ref.kind != "var" or ref.name in known:
                    continue
                if field == "variables":
                    msg = f"initial variables cannot use other variables ({{{{ {ref.name} }}}})"
                else:
                    msg = f"variable {ref.name!r} is used before any step captures it"
                    hint = difflib.get_close_matches(ref.name, sorted(known), n=1, cutoff=0.6)
                    msg += f"; did you mean {hint[0]!r}?" if hint else ""
                self._add(doc, sub, msg)

    def _unique_names(self, steps: Iterable[Located]) -> None:
        seen: dict[str, Located] = {}
        for loc in steps:
            name = loc.data.get("name") if isinstance(loc.data, dict) else None
            if not isinstance(name, str):
                continue
            if name in seen:
                first = seen[name]
                line, _ = first.doc.where(first.path)
                self._add(
                    loc.doc, (*loc.path, "name"), f"step name {name!r} already used (line {line})"
                )
            else:
                seen[name] = loc

    def _add(self, doc: Document, path: PathT, message: str) -> None:
        self.problems.append(doc.problem(path, message))


def _captures(step: Any) -> set[str]:
    if isinstance(step, dict) and isinstance(step.get("capture"), dict):
        return {k for k in step["capture"] if isinstance(k, str)}
    return set()
