"""`canary X` builds the parser of X's module only, and that module is the one registering X."""

from __future__ import annotations

import argparse
import importlib

import pytest

from canary.cli.main import COMMAND_MODULES, build_parser


def _commands(parser: argparse.ArgumentParser) -> list[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


@pytest.mark.parametrize("module", list(COMMAND_MODULES))
def test_each_module_registers_the_commands_it_is_listed_for(module: str) -> None:
    parser = argparse.ArgumentParser()
    importlib.import_module(f"canary.cli.{module}").register(parser.add_subparsers())
    assert tuple(_commands(parser)) == COMMAND_MODULES[module]


def test_a_command_gets_its_own_parser_and_anything_else_every_command() -> None:
    assert _commands(build_parser(["local", "status"])) == ["local"]
    assert _commands(build_parser(["replay", "x.json"])) == ["export", "replay"]
    every = [c for commands in COMMAND_MODULES.values() for c in commands]
    for argv in ([], ["--help"], ["no-such-command"]):
        assert _commands(build_parser(argv)) == every
    assert _commands(build_parser()) == every
