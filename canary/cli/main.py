"""Entry point of the `canary` command: builds the parser and maps errors to exit codes."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from canary import __version__
from canary.cli.exits import EXIT_FAILURE, EXIT_INVALID
from canary.errors import CanaryError, ConfigError

# What a shell reports for a process killed by SIGPIPE: `canary schema | head` is not an error.
EXIT_BROKEN_PIPE = 141

Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


# The modules that register commands, in the order `canary --help` lists them, and the commands
# each registers: `canary X` imports X's module only. Importing them all (numpy, the analysis
# models and Celery behind some) cost every command over a second, several on a busy machine.
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "transactions": ("validate", "probe", "schema"),
    "rollouts": ("run", "demo"),
    "operate": ("rollout",),
    "localmode": ("local",),
    "monitor": ("monitor",),
    "replay": ("export", "replay"),
    "report": ("report",),
    "exporter": ("exporter",),
    "dashboard": ("dashboard",),
    "worker": ("worker",),
    "gate": ("gate",),
}


def _registrars(command: str | None = None) -> list[Registrar]:
    """The register functions of every module, or only of the one that owns ``command``."""
    names = [m for m, commands in COMMAND_MODULES.items() if command in commands]
    return [
        importlib.import_module(f"canary.cli.{name}").register for name in names or COMMAND_MODULES
    ]


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``: of its command only when it names one, else of every command."""
    parser = argparse.ArgumentParser(
        prog="canary",
        description="Ship a canary to a growing share of traffic; roll it back when synthetic "
        "transactions show it is worse than stable.",
    )
    parser.add_argument("--version", action="version", version=f"canary {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    # The top-level parser has options only before the command: its first word is the command.
    command = argv[0] if argv and not argv[0].startswith("-") else None
    for register in _registrars(command):
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(words)
    args = parser.parse_args(words)
    try:
        code = int(args.func(args))
        # Output still buffered would otherwise hit a closed pipe at exit, outside this try.
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _reader_went_away()
    except ConfigError as exc:
        print(str(exc) or "invalid input", file=sys.stderr)
        return EXIT_INVALID
    except CanaryError as exc:
        print(f"canary: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("canary: interrupted", file=sys.stderr)
        return 130


def _reader_went_away() -> int:
    """The reader of our stdout closed it (``| head``): stop quietly, as a pipe's writer should."""
    # Python flushes stdout again at exit; pointing it at /dev/null keeps that from failing too.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
