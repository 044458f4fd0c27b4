"""The command router running real shell commands: templating, output, failures, timeouts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from canary.errors import ConfigError, RouterError
from canary.routers import RouteContext, build_router
from canary.routers.command import CommandRouter

pytestmark = pytest.mark.integration

CTX = RouteContext(
    "shop-42",
    "shop",
    {"url": "http://stable:8080", "version": "1.0", "image": "shop:1.0"},
    {"url": "http://canary:8080", "version": "1.1", "image": "registry/shop:1.1; rm -rf /"},
    step=3,
)


def test_each_action_runs_its_command_with_quoted_values(tmp_path: Path) -> None:
    log = tmp_path / "actions.log"
    router = build_router(
        "command",
        {
            "set_weight": f"echo set {{{{ weight }}}} {{{{ stable_weight }}}} step={{{{step}}}} >> {log}",
            "promote": f"echo promote {{{{ canary.image }}}} {{{{ rollout_id }}}} >> {log}",
            "rollback": f"echo rollback {{{{ stable.version }}}} {{{{ service }}}} >> {log}",
        },
    )
    router.set_weight(25, CTX)
    router.promote(CTX)
    router.rollback(CTX)
    # The hostile image name stayed one quoted word: nothing was deleted, it was only echoed.
    assert log.read_text().splitlines() == [
        "set 25 75 step=3",
        "promote registry/shop:1.1; rm -rf / shop-42",
        "rollback 1.0 shop",
    ]
    assert isinstance(router, CommandRouter)
    assert router.last_output is not None and "exit 0" in router.last_output


def test_output_is_captured_for_the_events(tmp_path: Path) -> None:
    router = CommandRouter(set_weight="echo moved to {{ weight }}; echo warn >&2")
    router.set_weight(10, CTX)
    result = router.last_result
    assert result is not None
    assert (result.exit_code, result.stdout, result.stderr) == (0, "moved to 10", "warn")
    assert router.last_output is not None
    assert router.last_output.startswith("$ echo moved to 10;")
    assert "moved to 10" in router.last_output and "[stderr] warn" in router.last_output


def test_long_output_is_truncated() -> None:
    router = CommandRouter(set_weight="yes x | head -n 5000", max_output=100)
    router.set_weight(1, CTX)
    assert router.last_result is not None
    assert len(router.last_result.stdout) < 200
    assert "more characters" in router.last_result.stdout


def test_non_zero_exit_is_a_router_error_with_the_output() -> None:
    router = CommandRouter(set_weight="echo 'deployment shop not found' >&2; false")
    with pytest.raises(
        RouterError, match=r"set_weight command exited 1: deployment shop not found"
    ):
        router.set_weight(10, CTX)


def test_a_command_past_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    marker = tmp_path / "late"
    router = CommandRouter(set_weight=f"sleep 5; touch {marker}", timeout=0.5)
    began = time.monotonic()
    with pytest.raises(RouterError, match=r"ran past its 0\.5 s timeout"):
        router.set_weight(10, CTX)
    assert time.monotonic() - began < 3
    time.sleep(0.2)
    assert not marker.exists()
    assert router.last_result is not None and router.last_result.exit_code is None


def test_verify_maps_exit_status(tmp_path: Path) -> None:
    state = tmp_path / "weight"
    router = CommandRouter(
        set_weight=f"echo {{{{ weight }}}} > {state}",
        verify=f'test "$(cat {state})" = {{{{ weight }}}}',
    )
    router.set_weight(30, CTX)
    assert router.verify_weight(30, CTX) is True
    assert router.verify_weight(40, CTX) is False
    assert CommandRouter(set_weight="true").verify_weight(40, CTX) is None
    with pytest.raises(RouterError, match="verify command exited 2"):
        CommandRouter(set_weight="true", verify="exit 2").verify_weight(40, CTX)


def test_promote_and_rollback_fall_back_to_set_weight(tmp_path: Path) -> None:
    log = tmp_path / "w"
    router = CommandRouter(set_weight=f"echo {{{{ weight }}}} >> {log}")
    router.promote(CTX)
    router.rollback(CTX)
    assert log.read_text().split() == ["100", "0"]


def test_env_and_cwd_reach_the_command(tmp_path: Path) -> None:
    router = CommandRouter(
        set_weight='echo "$DEPLOY_ENV $CANARY_ACTION $(pwd)"',
        env={"DEPLOY_ENV": "prod"},
        cwd=str(tmp_path),
    )
    router.set_weight(5, CTX)
    assert router.last_result is not None
    assert router.last_result.stdout == f"prod set_weight {tmp_path}"


def test_a_missing_value_is_a_router_error() -> None:
    router = CommandRouter(set_weight="deploy {{ stable.image }} {{ canary.digest }}")
    with pytest.raises(RouterError, match=r"canary.digest \}\} has no value"):
        router.set_weight(5, CTX)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "at least one of"),
        ({"set_weight": "echo {{ wieght }}"}, "unknown variable 'wieght'"),
        ({"set_weight": "echo {{ canary }}"}, r"use canary.<key>"),
        ({"set_weight": "echo {{ weight.x }}"}, "has no attributes"),
        ({"set_weight": "echo {{ __import__('os') }}"}, "is not a variable name"),
        ({"set_weight": "true", "timeout": 0}, "timeout must be > 0"),
        ({"set_weight": "true", "shell_command": "x"}, "unexpected keyword"),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_router("command", options)
