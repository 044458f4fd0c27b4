"""The one exception tree of canary.

    CanaryError
     ├── ConfigError     a user's definition or configuration is invalid (carries every Problem)
     ├── ProbeError      a probe could not be set up (not a failed probe: that is a result)
     ├── StoreError      Redis is unreachable or holds something unexpected
     ├── RouterError     a router could not move or read traffic weights
     └── NotifierError   an alert channel refused or could not be reached

Expected failures of the system under test (timeouts, 5xx, bad bodies) are never exceptions:
they are failed TransactionResults with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass


class CanaryError(Exception):
    """Base of every error canary raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a user's file, with where it is."""

    file: str
    line: int
    col: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(CanaryError):
    """Invalid user input; holds every problem found, each with file:line:col and field path."""

    def __init__(self, problems: list[Problem] | str) -> None:
        if isinstance(problems, str):
            self.problems: list[Problem] = []
            text = problems
        else:
            self.problems = list(problems)
            text = "\n".join(str(p) for p in self.problems)
        super().__init__(text)


class ProbeError(CanaryError):
    """A probe could not be prepared (for example a template that cannot be rendered)."""


class StoreError(CanaryError):
    """The results store (Redis) failed or holds unexpected data."""


class RouterError(CanaryError):
    """A router failed to set, read, promote or roll back traffic weights."""


class NotifierError(CanaryError):
    """An alert channel failed."""


def unknown_name(kind: str, name: str, known: list[str] | tuple[str, ...]) -> ConfigError:
    """The error for a plugin name that is not registered, listing the known ones."""
    return ConfigError(f"unknown {kind} {name!r}; known {kind}s: {', '.join(sorted(known))}")
