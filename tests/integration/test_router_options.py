"""Plugin options checked before a rollout exists: the CLI's loader and the Celery API's answer."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

from canary.errors import ConfigError
from canary.local import LocalFleet
from tests.unit.routers.test_options import BAD_CONFIG, BAD_CONFIG_PROBLEMS

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CANARY = str(Path(sys.executable).with_name("canary"))
BROWSE = ROOT / "configs" / "transactions" / "demo-browse.yaml"
BAD = f"""\
name: shop
stable: {{url: "http://127.0.0.1:8001"}}
canary: {{url: "http://127.0.0.1:8002"}}
transactions: ["{BROWSE}"]
router:
  type: haproxy
  sockett: /run/haproxy.sock
notifiers:
  - type: webhook
    url: 12
"""
PROBLEMS = BAD_CONFIG_PROBLEMS


@pytest.mark.parametrize("command", [["rollout", "start"], ["run"]])
def test_the_cli_refuses_bad_plugin_options_before_anything_runs(
    tmp_path: Path, command: list[str]
) -> None:
    path = tmp_path / "rollout.yaml"
    path.write_text(BAD)
    env = {
        **os.environ,
        "CANARY_HOME": str(tmp_path / "home"),
        # Nothing listens here: the file must be refused before any connection is tried.
        "CANARY_REDIS_URL": "redis://127.0.0.1:1/0",
    }
    proc = subprocess.run(
        [CANARY, *command, str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    out = proc.stdout + proc.stderr
    assert f"{path}:7:12: {PROBLEMS[0]}" in out
    assert f"{path}:10:10: {PROBLEMS[1]}" in out
    assert "Traceback" not in out


@pytest.fixture()
def fleet(tmp_path: Path) -> Iterator[LocalFleet]:
    fleet = LocalFleet(tmp_path / "fleet", probe_concurrency=1, control_concurrency=1)
    fleet.start()
    try:
        yield fleet
    finally:
        fleet.stop(timeout=3)


def test_the_start_rollout_task_answers_with_the_same_problems(fleet: LocalFleet) -> None:
    app = Celery("test-client", broker=fleet.redis_url, backend=fleet.redis_url)
    app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])
    result = app.send_task(
        "canary.start_rollout", args=[BAD_CONFIG, [], None], queue=fleet.control_queue
    )
    with pytest.raises(ConfigError) as exc:
        result.get(timeout=60)
    lines = str(exc.value).splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == PROBLEMS
