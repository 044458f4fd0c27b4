"""Entry point of the `canary` command: builds the parser and maps errors to exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from canary import __version__
from canary.cli.exits import EXIT_FAILURE, EXIT_INVALID
from canary.errors import CanaryError, ConfigError

# What a shell reports for a process killed by SIGPIPE: `canary schema | head` is not an error.
EXIT_BROKEN_PIPE = 141

Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _registrars() -> list[Registrar]:
    from canary.cli import (
        dashboard,
        exporter,
        gate,
        localmode,
        monitor,
        operate,
        replay,
        report,
        rollouts,
        transactions,
        worker,
    )

    return [
        transactions.register,
        rollouts.register,
        operate.register,
        localmode.register,
        monitor.register,
        replay.register,
        report.register,
        exporter.register,
        dashboard.register,
        worker.register,
        gate.register,
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="canary",
        description="Ship a canary to a growing share of traffic; roll it back when synthetic "
        "transactions show it is worse than stable.",
    )
    parser.add_argument("--version", action="version", version=f"canary {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for register in _registrars():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
