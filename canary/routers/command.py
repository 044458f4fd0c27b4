"""The command router: operator-supplied shell commands per action, with safe templating."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator, model_validator

from canary.errors import ConfigError, RouterError
from canary.plugins import Options, parse_options
from canary.routers.base import RouteContext, check_weight
from canary.routers.command_allow import CommandPolicy, load_policy

log = logging.getLogger(__name__)

ACTIONS = ("set_weight", "verify", "promote", "rollback")
VARIABLES = {
    "weight": "the canary's share of traffic, 0-100",
    "stable_weight": "100 - weight",
    "rollout_id": "the rollout's id",
    "service": "the service name",
    "step": "the step number",
    "action": "set_weight, verify, promote or rollback",
    "stable": "stable.url, stable.version, stable.image (any key of the rollout's stable block)",
    "canary": "canary.url, canary.version, canary.image (any key of the rollout's canary block)",
}
_PLACEHOLDER = re.compile(r"\{\{\s*(?P<name>[^{}]*?)\s*\}\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def placeholders(template: str) -> list[str]:
    """The variable names used in ``template``; ConfigError for a malformed or unknown one."""
    names = []
    for match in _PLACEHOLDER.finditer(template):
        name = match.group("name")
        if not _NAME.match(name):
            raise ConfigError(f"router command: {{{{ {name} }}}} is not a variable name")
        root, _, attr = name.partition(".")
        if root not in VARIABLES:
            raise ConfigError(
                f"router command: unknown variable {name!r}; known: {', '.join(VARIABLES)}"
            )
        if bool(attr) != (root in ("stable", "canary")):
            raise ConfigError(
                f"router command: {name!r}: use {root}.<key>"
                if not attr
                else f"router command: {root!r} has no attributes"
            )
        names.append(name)
    return names


def render(template: str, values: dict[str, Any], quote: Any = shlex.quote) -> str:
    """``template`` with each ``{{ name }}`` or ``{{ name.attr }}`` replaced by its value, passed
    through ``quote`` (shell quoting by default; ``str`` for one word of a command run without a
    shell). Nothing is evaluated; a variable without a value is a RouterError.
    """
    placeholders(template)

    def value(match: re.Match[str]) -> str:
        name = match.group("name")
        root, _, attr = name.partition(".")
        found = values.get(root)
        if attr:
            found = found.get(attr) if isinstance(found, dict) else None
        if found is None:
            raise RouterError(f"command router: {{{{ {name} }}}} has no value in this rollout")
        return str(quote(str(found)))

    return _PLACEHOLDER.sub(value, template)


def allowed_words(policy: CommandPolicy, template: str) -> list[str]:
    """The words of ``template`` that ``policy`` lets run; ValueError when it refuses."""
    # ``{{ weight }}`` has spaces inside; written ``{{weight}}`` it stays within one word.
    return policy.check(_PLACEHOLDER.sub(lambda m: "{{" + m.group("name") + "}}", template))


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What one command did, for the rollout's events."""

    action: str
    command: str
    exit_code: int | None  # None when it was killed for running past the timeout
    stdout: str
    stderr: str
    seconds: float

    def summary(self) -> str:
        status = "timed out" if self.exit_code is None else f"exit {self.exit_code}"
        parts = [f"$ {self.command}  ({status}, {self.seconds:.2f} s)"]
        if self.stdout:
            parts.append(self.stdout)
        if self.stderr:
            parts.append(f"[stderr] {self.stderr}")
        return "\n".join(parts)


class CommandOptions(Options):
    """The ``router:`` block of ``type: command``."""

    set_weight: str | None = None
    verify: str | None = None
    promote: str | None = None
    rollback: str | None = None
    timeout: float = Field(default=60.0, gt=0)
    shell: str = "/bin/sh"
    cwd: str | None = None
    env: dict[str, str | int | float] = Field(default_factory=dict)
    max_output: int = Field(default=4000, ge=0)

    @field_validator("set_weight", "verify", "promote", "rollback")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                placeholders(v)
            except ConfigError as exc:
                raise ValueError(str(exc).removeprefix("router command: ")) from None
            policy = load_policy()
            if policy.enforced:
                allowed_words(policy, v)
        return v

    @field_validator("shell", "env")
    @classmethod
    def _no_shell_under_allow_list(cls, v: Any) -> Any:
        # Either could change what an allowed program does (BASH_ENV, LD_PRELOAD, PATH, ...).
        policy = load_policy()
        if v and v != "/bin/sh" and policy.enforced:
            raise ValueError(f"not allowed when {policy.source} is set on the workers")
        return v

    @model_validator(mode="after")
    def _some_action(self) -> CommandOptions:
        if not (self.set_weight or self.promote or self.rollback):
            raise ValueError("give at least one of set_weight, promote, rollback")
        return self

    def commands(self) -> dict[str, str]:
        """The command template of each action that has one."""
        given = (self.set_weight, self.verify, self.promote, self.rollback)
        return {a: t for a, t in zip(ACTIONS, given, strict=True) if t}


class CommandRouter:
    """Runs a shell command per action; non-zero exit (or a timeout) is a RouterError.

    ``verify`` exits 0 when the live weight is right, 1 when not; any other status is an error.
    Without ``promote``/``rollback`` commands, set_weight runs with 100/0. After each call
    ``last_result`` and ``last_output`` (command, status and truncated output) tell what ran.
    """

    name = "command"

    Options = CommandOptions

    def __init__(self, **options: Any) -> None:
        o = parse_options(CommandOptions, options, "router command")
        self.commands = o.commands()
        try:
            policy = load_policy()
            # Under an allow-list each command is a list of words run without a shell.
            self.words = (
                {action: allowed_words(policy, t) for action, t in self.commands.items()}
                if policy.enforced
                else None
            )
        except ValueError as exc:
            raise ConfigError(f"router command: {exc}") from None
        self.timeout = o.timeout
        self.shell = o.shell
        self.cwd = o.cwd
        self.env = {k: str(v) for k, v in o.env.items()}
        self.max_output = o.max_output
        self.last_result: CommandResult | None = None
        self.last_output: str | None = None

    def _values(self, action: str, weight: int, ctx: RouteContext) -> dict[str, Any]:
        return {
            "weight": weight,
            "stable_weight": 100 - weight,
            "rollout_id": ctx.rollout_id,
            "service": ctx.service,
            "step": ctx.step,
            "action": action,
            "stable": dict(ctx.stable),
            "canary": dict(ctx.canary),
        }

    def run(self, action: str, weight: int, ctx: RouteContext) -> CommandResult:
        """Run ``action``'s command; returns its result (a non-zero exit is not raised here)."""
        values = self._values(action, weight, ctx)
        if self.words is None:
            command = render(self.commands[action], values)
            argv = [self.shell, "-c", command]
        else:
            argv = [render(word, values, quote=str) for word in self.words[action]]
            command = shlex.join(argv)
        began = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self.cwd,
                env={**os.environ, **self.env, "CANARY_ACTION": action},
                # Its own group, so a timeout kills what the shell started too.
                start_new_session=True,
            )
        except OSError as exc:
            raise RouterError(
                f"command router: cannot start {argv[0]!r} for {action}: {exc.strerror or exc}"
            ) from None
        try:
            out, err = proc.communicate(timeout=self.timeout)
            code: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            try:
                out, err = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:  # a descendant left its session, keeping the pipes
                proc.kill()
                out, err = b"", b""
            code = None
        result = CommandResult(
            action,
            command,
            code,
            self._clip(out),
            self._clip(err),
            time.monotonic() - began,
        )
        self.last_result = result
        self.last_output = result.summary()
        log.info("command router %s: %s", action, self.last_output)
        return result

    def _clip(self, raw: bytes) -> str:
        text = raw.decode("utf-8", "replace").strip()
        if len(text) <= self.max_output:
            return text
        return f"{text[: self.max_output]}… ({len(text) - self.max_output} more characters)"

    def _must(self, action: str, weight: int, ctx: RouteContext) -> None:
        result = self.run(action, weight, ctx)
        if result.exit_code is None:
            raise RouterError(
                f"command router: {action} command ran past its {self.timeout:g} s timeout "
                f"and was killed: {_tail(result)}"
            )
        if result.exit_code != 0:
            raise RouterError(
                f"command router: {action} command exited {result.exit_code}: {_tail(result)}"
            )

    def set_weight(self, weight: int, ctx: RouteContext) -> None:
        check_weight(weight)
        if "set_weight" in self.commands:
            self._must("set_weight", weight, ctx)

    def verify_weight(self, weight: int, ctx: RouteContext) -> bool | None:
        check_weight(weight)
        if "verify" not in self.commands:
            return None
        result = self.run("verify", weight, ctx)
        if result.exit_code in (0, 1):
            return result.exit_code == 0
        status = "timed out" if result.exit_code is None else f"exited {result.exit_code}"
        raise RouterError(
            f"command router: verify command {status} (0 = right weight, 1 = wrong): "
            f"{_tail(result)}"
        )

    def promote(self, ctx: RouteContext) -> None:
        if "promote" in self.commands:
            self._must("promote", 100, ctx)
        else:
            self.set_weight(100, ctx)

    def rollback(self, ctx: RouteContext) -> None:
        if "rollback" in self.commands:
            self._must("rollback", 0, ctx)
        else:
            self.set_weight(0, ctx)


def _tail(result: CommandResult, limit: int = 500) -> str:
    text = result.stderr or result.stdout or "(no output)"
    return text if len(text) <= limit else "…" + text[-limit:]
