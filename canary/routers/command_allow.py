"""The workers' allow-list of programs a ``command`` router may run (CANARY_COMMAND_ALLOW).

Whoever can write to the fleet's Redis can start a rollout, and a ``command`` router runs its
commands as the workers' user. With an allow-list set, each command must start with a program
on the list and runs without a shell (its words go to the program as they are), so nothing but
the listed programs can run: no ``;``, pipes, redirections or ``$(...)``, and no ``env`` or
``shell`` options that could change what a listed program does.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

VARIABLE = "CANARY_COMMAND_ALLOW"
FILE_VARIABLE = "CANARY_COMMAND_ALLOW_FILE"
# Refuses every command: what compose sets unless the operator lists programs.
NONE = "none"
_OPERATORS = set("();<>|&")


@dataclass(frozen=True, slots=True)
class CommandPolicy:
    """Which programs may run: ``None`` means any (the allow-list is off)."""

    allowed: tuple[str, ...] | None = None
    source: str = ""

    @property
    def enforced(self) -> bool:
        return self.allowed is not None

    def permits(self, program: str) -> bool:
        if self.allowed is None:
            return True
        path = os.path.normpath(program)
        if not os.path.isabs(path):
            return False
        return any(
            path.startswith(entry) if entry.endswith("/") else path == entry
            for entry in self.allowed
        )

    def check(self, template: str) -> list[str]:
        """The words of ``template`` (placeholders untouched); ValueError when it may not run.

        Only called when the allow-list is enforced: otherwise the template goes to the shell.
        """
        words = split_words(template)
        if not words:
            raise ValueError("is empty")
        program = words[0]
        if "{{" in program:
            raise ValueError(f"the program cannot come from a variable under {self.source}")
        if not self.permits(program):
            listed = ", ".join(self.allowed or ()) or "nothing (command routers are off)"
            raise ValueError(
                f"{program!r} is not allowed by {self.source} on the workers; allowed: {listed}"
            )
        return words


def split_words(template: str) -> list[str]:
    """``template`` split as a POSIX shell would split words; ValueError on a shell operator."""
    try:
        words = shlex.split(template)
        # Non-POSIX mode keeps the quotes on each token, so a quoted ';' is not an operator.
        lexer = shlex.shlex(template, posix=False, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
    except ValueError as exc:
        raise ValueError(f"cannot be split into words: {exc}") from None
    for word in tokens:
        if word and set(word) <= _OPERATORS:
            raise ValueError(
                f"shell operator {word!r} is not allowed when {VARIABLE} is set "
                "(commands run without a shell); put the steps in a script on the allow-list"
            )
    return words


def load_policy(environ: dict[str, str] | None = None) -> CommandPolicy:
    """The policy of this process from its environment (read each time: tests change it).

    ``CANARY_COMMAND_ALLOW`` is a comma-separated list of absolute program paths (an entry ending
    in ``/`` allows every program under that directory), or ``none``; ``CANARY_COMMAND_ALLOW_FILE``
    names a file with one entry per line (``#`` starts a comment). Neither set: off.
    """
    env = os.environ if environ is None else environ
    listed = env.get(VARIABLE, "").strip()
    path = env.get(FILE_VARIABLE, "").strip()
    if not listed and not path:
        return CommandPolicy()
    entries: list[str] = []
    sources = []
    if listed:
        sources.append(VARIABLE)
        if listed.lower() != NONE:
            entries += [e.strip() for e in listed.split(",") if e.strip()]
    if path:
        sources.append(f"{FILE_VARIABLE} ({path})")
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            # Fail closed: an allow-list that cannot be read allows nothing.
            raise ValueError(f"{FILE_VARIABLE}: cannot read {path}: {exc.strerror}") from None
        for line in text.splitlines():
            entry = line.split("#", 1)[0].strip()
            if entry:
                entries.append(entry)
    for entry in entries:
        if not os.path.isabs(entry):
            raise ValueError(f"{' and '.join(sources)}: {entry!r} is not an absolute path")
    normal = tuple(os.path.normpath(e) + ("/" if e.endswith("/") else "") for e in entries)
    return CommandPolicy(normal, " and ".join(sources))
