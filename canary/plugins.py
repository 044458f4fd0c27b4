"""Plugin options: the strict model every router's and notifier's options extend, and its checks.

Each plugin class names its model as ``Options``; the rollout loader checks a ``router:`` or
``notifiers:`` block against it (so a typo is caught before anything runs) and the plugin's
constructor parses the same model, so the two can never disagree about what is valid.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from canary.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class Options(BaseModel):
    """Base of every plugin's options: unknown keys are errors, values are never changed later."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Plugin:
    """What a registered router or notifier class provides besides its protocol's methods."""

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]]


@dataclass(frozen=True, slots=True)
class OptionProblem:
    """One fault in a plugin's options: where (relative to the block), what, and whether the
    fault is the key itself (an unknown option) rather than its value."""

    path: tuple[str | int, ...]
    message: str
    at_key: bool = False
    missing: bool = False


def option_problems(model: type[BaseModel], options: Mapping[str, Any]) -> list[OptionProblem]:
    """Every fault of ``options`` against ``model``; empty when they are valid."""
    try:
        model.model_validate(dict(options))
    except ValidationError as exc:
        return [_problem(model, err) for err in exc.errors(include_url=False)]
    return []


def parse_options(model: type[M], options: Mapping[str, Any], what: str) -> M:
    """``options`` as ``model``; ConfigError listing every fault, prefixed by ``what``."""
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False):
            p = _problem(model, err)
            where = ".".join(str(x) for x in p.path)
            lines.append(f"{what}: {where}: {p.message}" if where else f"{what}: {p.message}")
        raise ConfigError("\n".join(lines)) from None


def known_options(model: type[BaseModel]) -> list[str]:
    """The option names ``model`` accepts, as a user writes them."""
    return sorted(f.alias or name for name, f in model.model_fields.items())


def _problem(model: type[BaseModel], err: Any) -> OptionProblem:
    loc = tuple(part for part in err["loc"] if isinstance(part, str | int))
    kind = err["type"]
    if kind == "extra_forbidden" and loc:
        key = str(loc[-1])
        known = known_options(model) if len(loc) == 1 else []
        hint = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        msg = f"unknown field {key!r}"
        if hint:
            msg += f"; did you mean {hint[0]!r}?"
        elif known:
            msg += f"; known fields: {', '.join(known)}"
        return OptionProblem(loc, msg, at_key=True)
    if kind == "missing":
        return OptionProblem(loc, "is required", missing=True)
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return OptionProblem(loc, msg[:1].lower() + msg[1:] if msg else "is invalid")
