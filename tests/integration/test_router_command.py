"""The command router running real shell commands: templating, output, failures, timeouts, and
the workers' allow-list of programs (CANARY_COMMAND_ALLOW)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from canary.errors import ConfigError, RouterError
from canary.local import LocalFleet
from canary.local.procs import pid_running
from canary.rollout.config import load_rollout
from canary.routers import RouteContext, build_router
from canary.routers.command import CommandRouter
from tests.fixtures.waits import wait_until

pytestmark = pytest.mark.integration

BROWSE = Path(__file__).resolve().parents[2] / "configs" / "transactions" / "demo-browse.yaml"

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
    marker, pids = tmp_path / "late", tmp_path / "pids"
    # The shell and its child write down their pids, so their end is an event to wait for.
    command = f"echo $$ > {pids}; sleep 30 & echo $! >> {pids}; wait; touch {marker}"
    # 2 s: room for the shell to start its child on a busy machine before the timeout.
    router = CommandRouter(set_weight=command, timeout=2.0)
    with pytest.raises(RouterError, match=r"ran past its 2 s timeout"):
        router.set_weight(10, CTX)
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) == 2
    wait_until("the command and its child to be gone", lambda: not any(map(pid_running, started)))
    assert not marker.exists()  # the shell died before it could get there
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
        ({"set_weight": "true", "timeout": 0}, "timeout: input should be greater than 0"),
        ({"set_weight": "true", "shell_command": "x"}, "unknown field 'shell_command'"),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_router("command", options)


# --- the allow-list ---------------------------------------------------------------------------


@pytest.fixture()
def deploy_script(tmp_path: Path) -> Path:
    """An executable that appends its arguments, one per line, to ``calls.log`` beside it."""
    script = tmp_path / "bin" / "deploy.sh"
    script.parent.mkdir()
    script.write_text(f'#!/bin/sh\nfor a in "$@"; do echo "$a"; done >> {tmp_path}/calls.log\n')
    script.chmod(0o755)
    return script


def test_an_allowed_program_runs_without_a_shell(
    tmp_path: Path, deploy_script: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CANARY_COMMAND_ALLOW", f"/usr/bin/true,{deploy_script}")
    router = build_router(
        "command",
        {"set_weight": f"{deploy_script} --weight={{{{ weight }}}} '{{{{ canary.image }}}}' $HOME"},
    )
    router.set_weight(25, CTX)
    # Each word reached the program as it was: no variable expanded, the hostile image one word.
    assert (tmp_path / "calls.log").read_text().splitlines() == [
        "--weight=25",
        "registry/shop:1.1; rm -rf /",
        "$HOME",
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"set_weight": "/bin/rm -rf /tmp/nothing"}, "'/bin/rm' is not allowed by"),
        ({"set_weight": "rm -rf /tmp/nothing"}, "'rm' is not allowed by"),
        ({"set_weight": "{{ canary.image }} x"}, "the program cannot come from a variable"),
        ({"set_weight": "DEPLOY; /bin/rm -rf /tmp/x"}, "shell operator ';' is not allowed"),
        ({"set_weight": "DEPLOY $(id) | cat"}, "shell operator '|' is not allowed"),
        ({"set_weight": "DEPLOY", "env": {"LD_PRELOAD": "/tmp/x.so"}}, "env: not allowed"),
        ({"set_weight": "DEPLOY", "shell": "/bin/bash"}, "shell: not allowed"),
    ],
)
def test_the_allow_list_refuses_everything_else(
    deploy_script: Path,
    monkeypatch: pytest.MonkeyPatch,
    options: dict[str, Any],
    message: str,
) -> None:
    monkeypatch.setenv("CANARY_COMMAND_ALLOW", str(deploy_script))
    options = {
        k: v.replace("DEPLOY", str(deploy_script)) if isinstance(v, str) else v
        for k, v in options.items()
    }
    with pytest.raises(ConfigError, match=message):
        build_router("command", options)


def test_the_allow_list_can_be_a_file_of_programs_and_directories(
    tmp_path: Path, deploy_script: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    allow = tmp_path / "commands.allow"
    allow.write_text(f"# programs the command router may run\n{deploy_script.parent}/\n")
    monkeypatch.setenv("CANARY_COMMAND_ALLOW_FILE", str(allow))
    build_router("command", {"set_weight": f"{deploy_script} {{{{ weight }}}}"}).set_weight(5, CTX)
    assert (tmp_path / "calls.log").read_text() == "5\n"
    with pytest.raises(ConfigError, match="is not allowed by CANARY_COMMAND_ALLOW_FILE"):
        build_router("command", {"set_weight": f"{deploy_script.parent}/../x.sh"})
    monkeypatch.setenv("CANARY_COMMAND_ALLOW_FILE", str(tmp_path / "missing.allow"))
    with pytest.raises(ConfigError, match="cannot read"):
        build_router("command", {"set_weight": str(deploy_script)})


def test_none_turns_command_routers_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANARY_COMMAND_ALLOW", "none")
    with pytest.raises(ConfigError, match="allowed: nothing"):
        build_router("command", {"set_weight": "/usr/bin/true"})


def test_the_loader_points_at_the_refused_command(
    tmp_path: Path, deploy_script: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CANARY_COMMAND_ALLOW", str(deploy_script))
    path = tmp_path / "rollout.yaml"
    path.write_text(
        "name: shop\n"
        "stable: {url: 'http://127.0.0.1:8001'}\n"
        "canary: {url: 'http://127.0.0.1:8002'}\n"
        f"transactions: ['{BROWSE}']\n"
        "router:\n"
        "  type: command\n"
        "  set_weight: curl -X POST http://lb/weights/{{ weight }}\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_rollout(path)
    (problem,) = exc.value.problems
    assert (problem.line, problem.col, problem.path) == (7, 15, "router.set_weight")
    assert problem.message.startswith("'curl' is not allowed by CANARY_COMMAND_ALLOW")


@pytest.fixture()
def guarded_fleet(tmp_path: Path, deploy_script: Path) -> Iterator[LocalFleet]:
    fleet = LocalFleet(
        tmp_path / "fleet",
        env={"CANARY_COMMAND_ALLOW": str(deploy_script)},
        probe_concurrency=1,
        control_concurrency=1,
    )
    fleet.start()
    try:
        yield fleet
    finally:
        fleet.stop(timeout=3)


def test_workers_with_an_allow_list_refuse_a_rollout_that_runs_anything_else(
    guarded_fleet: LocalFleet, tmp_path: Path
) -> None:
    """Someone with Redis access sends a rollout straight to the fleet, past any CLI check."""
    marker = tmp_path / "pwned"
    config = {
        "name": "shop",
        "stable": {"url": "http://127.0.0.1:8001"},
        "canary": {"url": "http://127.0.0.1:8002"},
        "transactions": ["browse.yaml"],
        "router": {"type": "command", "set_weight": f"touch {marker}"},
    }
    app = Celery("test-client", broker=guarded_fleet.redis_url, backend=guarded_fleet.redis_url)
    app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])
    result = app.send_task(
        "canary.start_rollout", args=[config, [], None], queue=guarded_fleet.control_queue
    )
    with pytest.raises(ConfigError, match=r"router\.set_weight: 'touch' is not allowed by"):
        result.get(timeout=60)
    assert not marker.exists()
