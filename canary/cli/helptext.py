"""The shared shape of every subcommand's `--help`: a wrapped description, examples, exit codes."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Mapping, Sequence


class HelpFormatter(argparse.HelpFormatter):
    """Wraps each line on its own, so that the epilog's examples and exit codes keep their lines."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out = []
        for line in text.splitlines():
            body = line.lstrip(" ")
            lead = indent + " " * (len(line) - len(body))
            # An indented line (an example) hangs its continuation; prose wraps flush.
            hang = lead + "    " if len(line) > len(body) else lead
            out.append(
                textwrap.fill(body, width, initial_indent=lead, subsequent_indent=hang)
                if body
                else ""
            )
        return "\n".join(out)


def epilog(examples: Sequence[str], exits: Mapping[int, str]) -> str:
    """``examples:`` and ``exit status:`` sections, for a parser built with HelpFormatter."""
    lines = ["examples:", *(f"  {e}" for e in examples), "", "exit status:"]
    lines += [f"  {code}  {text}" for code, text in sorted(exits.items())]
    return "\n".join(lines)


def helped(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    *,
    help: str,
    description: str,
    examples: Sequence[str],
    exits: Mapping[int, str],
) -> argparse.ArgumentParser:
    """``sub.add_parser`` with a description, examples and exit codes in its ``--help``."""
    return sub.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog(examples, exits),
        formatter_class=HelpFormatter,
    )
