"""Entry point of the `canary` command: builds the parser and maps errors to exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from canary import __version__
from canary.errors import CanaryError, ConfigError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID = 2
EXIT_ROLLED_BACK = 3

Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _registrars() -> list[Registrar]:
    from canary.cli import (
        dashboard,
        exporter,
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
        return int(args.func(args))
    except ConfigError as exc:
        print(str(exc) or "invalid input", file=sys.stderr)
        return EXIT_INVALID
    except CanaryError as exc:
        print(f"canary: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("canary: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
