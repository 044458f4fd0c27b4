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

from canary.errors import ConfigError, RouterError
from canary.routers.base import RouteContext, check_weight

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


def render(template: str, values: dict[str, Any]) -> str:
    """``template`` with each ``{{ name }}`` or ``{{ name.attr }}`` replaced by its shell-quoted
    value. Nothing is evaluated; a variable without a value is a RouterError.
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
        return shlex.quote(str(found))

    return _PLACEHOLDER.sub(value, template)


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


class CommandRouter:
    """Runs a shell command per action; non-zero exit (or a timeout) is a RouterError.

    ``verify`` exits 0 when the live weight is right, 1 when not; any other status is an error.
    Without ``promote``/``rollback`` commands, set_weight runs with 100/0. After each call
    ``last_result`` and ``last_output`` (command, status and truncated output) tell what ran.
    """

    name = "command"

    def __init__(
        self,
        set_weight: str | None = None,
        verify: str | None = None,
        promote: str | None = None,
        rollback: str | None = None,
        timeout: float = 60.0,
        shell: str = "/bin/sh",
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        max_output: int = 4000,
    ) -> None:
        self.commands = {
            action: template
            for action, template in zip(
                ACTIONS, (set_weight, verify, promote, rollback), strict=True
            )
            if template
        }
        if not self.commands.keys() & {"set_weight", "promote", "rollback"}:
            raise ConfigError("router command: give at least one of set_weight, promote, rollback")
        for template in self.commands.values():
            placeholders(template)
        if timeout <= 0:
            raise ConfigError("router command: timeout must be > 0")
        self.timeout = float(timeout)
        self.shell = shell
        self.cwd = cwd
        self.env = {str(k): str(v) for k, v in (env or {}).items()}
        self.max_output = int(max_output)
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
        command = render(self.commands[action], self._values(action, weight, ctx))
        began = time.monotonic()
        try:
            proc = subprocess.Popen(
                [self.shell, "-c", command],
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
                f"command router: cannot start {self.shell!r} for {action}: {exc.strerror or exc}"
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
