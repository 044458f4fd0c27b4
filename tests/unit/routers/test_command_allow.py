"""The command allow-list's parsing: variables, files, directories, and splitting into words."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from canary.routers.command_allow import CommandPolicy, load_policy, split_words

ROOT = Path(__file__).resolve().parents[3]


def test_off_unless_a_variable_is_set() -> None:
    assert not load_policy({}).enforced
    assert not load_policy({"CANARY_COMMAND_ALLOW": "  "}).enforced


def test_a_list_of_programs_and_directories() -> None:
    policy = load_policy({"CANARY_COMMAND_ALLOW": "/opt/deploy/, /usr/bin/kubectl"})
    assert policy.permits("/opt/deploy/set-weight.sh")
    assert policy.permits("/usr/bin/kubectl")
    assert not policy.permits("/usr/bin/kubectl2")
    assert not policy.permits("/opt/deploy/../../bin/sh")
    assert not policy.permits("kubectl")


def test_none_allows_nothing_and_relative_entries_are_refused() -> None:
    assert load_policy({"CANARY_COMMAND_ALLOW": "none"}) == CommandPolicy(
        (), "CANARY_COMMAND_ALLOW"
    )
    with pytest.raises(ValueError, match=r"'deploy\.sh' is not an absolute path"):
        load_policy({"CANARY_COMMAND_ALLOW": "deploy.sh"})


def test_a_file_with_comments_adds_to_the_list(tmp_path: Path) -> None:
    allow = tmp_path / "allow"
    allow.write_text("# deploy tools\n/opt/a.sh  # weights\n\n/opt/b.sh\n")
    policy = load_policy({"CANARY_COMMAND_ALLOW_FILE": str(allow)})
    assert policy.allowed == ("/opt/a.sh", "/opt/b.sh")


def test_words_keep_quotes_and_refuse_operators() -> None:
    assert split_words("/opt/a.sh 'two words' --x={{weight}}") == [
        "/opt/a.sh",
        "two words",
        "--x={{weight}}",
    ]
    assert split_words("/opt/a.sh ';'") == ["/opt/a.sh", ";"]
    for operator in ("&&", ">", "|", ";", "&"):
        with pytest.raises(ValueError, match="shell operator"):
            split_words(f"/opt/a.sh {operator} /bin/sh")


def test_compose_turns_the_allow_list_on() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    env = compose["x-canary"]["environment"]
    assert env["CANARY_COMMAND_ALLOW"] == "${CANARY_COMMAND_ALLOW:-none}"
