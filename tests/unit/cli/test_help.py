"""Every subcommand's `--help` says what it does, shows an example and lists its exit codes."""

from __future__ import annotations

import argparse

import pytest

from canary.cli.main import build_parser

# Every subcommand of `canary`.
COVERED = [
    "run",
    "local",
    "local up",
    "local down",
    "local status",
    "gate",
    "validate",
    "probe",
    "schema",
    "report",
    "dashboard",
    "demo",
    "monitor",
    "monitor add",
    "monitor list",
    "monitor remove",
    "export",
    "replay",
    "worker",
    "exporter",
    "rollout",
    *(
        f"rollout {a}"
        for a in ("start", "status", "watch", "pause", "resume", "promote", "abort", "retry")
    ),
]


def _parser(path: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for word in path.split():
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[word]
    return parser


@pytest.mark.parametrize("path", COVERED)
def test_help_has_description_example_and_exit_codes(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    parser = _parser(path)
    text = parser.format_help()
    assert parser.description and len(parser.description) > 40, path
    assert "\nexamples:\n  canary " in text or "\nexamples:\n  CANARY_" in text, text
    assert "\nexit status:\n  0  " in text, text
    assert all(len(line) <= 80 for line in text.splitlines() if not line.startswith("  canary"))
