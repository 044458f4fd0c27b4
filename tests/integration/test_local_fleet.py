"""Local mode with real processes: Redis, Celery workers, and no orphans whatever kills us."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

from canary.errors import CanaryError
from canary.local import LocalFleet, ManagedProcess, free_port, redis_server_binary, start_redis
from tests.fixtures.waits import START_CEILING_S

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

# A throw-away Celery app, so these tests depend on local mode only, not on workers/app.py.
TINY_APP = """
import os
from celery import Celery

url = os.environ["CANARY_REDIS_URL"]
app = Celery("tiny", broker=url, backend=url)
app.conf.update(
    task_serializer="json", result_serializer="json",
    accept_content=["json"], result_accept_content=["json"],
    broker_connection_retry_on_startup=True,
)

@app.task(name="tiny.add")
def add(a, b):
    return a + b

@app.task(name="tiny.whoami")
def whoami():
    return os.getpid()
"""


def _gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie waiting to be reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def _wait_gone(pids: list[int], timeout: float = 5.0) -> list[int]:
    """The pids still running after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(_gone(p) for p in pids):
            return []
        time.sleep(0.05)
    return [p for p in pids if not _gone(p)]


@pytest.fixture()
def tiny_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    # A CANARY_REDIS_URL from outside would make the fleets under test skip their own Redis.
    monkeypatch.delenv("CANARY_REDIS_URL", raising=False)
    app_dir = tmp_path / "tinyapp"
    app_dir.mkdir()
    (app_dir / "tinyapp.py").write_text(TINY_APP)
    yield {"PYTHONPATH": os.pathsep.join([str(app_dir), str(REPO)])}


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = {free_port() for _ in range(20)}
    assert len(ports) == 20
    assert all(1024 < p < 65536 for p in ports)


def test_processes_drawing_ports_at_once_never_get_the_same_one(tmp_path: Path) -> None:
    # As xdist workers, and the commands their tests start, do: each draws 25 ports from one
    # range of 150 (where random picks without the shared claims would surely collide).
    code = "from canary.local import free_port; print(*[free_port() for _ in range(25)])"
    env = {**os.environ, "CANARY_PORT_RANGE": "19000-19149", "TMPDIR": str(tmp_path)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    drawn = [int(p) for proc in procs for p in proc.communicate(timeout=120)[0].split()]
    assert len(drawn) == 100 and len(set(drawn)) == 100
    assert all(19000 <= p <= 19149 for p in drawn)


def test_redis_binary_is_found() -> None:
    assert os.access(redis_server_binary(), os.X_OK)


def test_start_redis_is_local_and_ephemeral(tmp_path: Path) -> None:
    proc, url = start_redis(tmp_path)
    try:
        assert re.fullmatch(r"redis://:[^@]+@127\.0\.0\.1:\d+/0", url), url
        client = redis.Redis.from_url(url)
        assert client.ping()
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        assert client.config_get("protected-mode")["protected-mode"] == "yes"
        assert client.config_get("save")["save"] == ""
        assert client.config_get("appendonly")["appendonly"] == "no"
        assert Path(str(client.config_get("dir")["dir"])).is_relative_to(tmp_path.resolve())
        client.close()
        # A password, and not on the command line, which `ps` shows to every user.
        password = url.split("://:", 1)[1].split("@", 1)[0]
        assert len(password) >= 20
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=port, socket_timeout=5).ping()
        assert proc.pid is not None
        assert password not in Path(f"/proc/{proc.pid}/cmdline").read_text()
        assert (tmp_path / "redis" / "redis-auth.conf").stat().st_mode & 0o077 == 0
    finally:
        assert proc.stop() == 0
    assert proc.pid is not None and _gone(proc.pid)


def test_start_redis_with_a_given_password_keeps_it(tmp_path: Path) -> None:
    proc, url = start_redis(tmp_path, password='a "quoted" \\ pass')
    try:
        assert redis.Redis.from_url(url, socket_timeout=5).ping()
        assert redis.Redis(
            port=int(url.rsplit(":", 1)[1].split("/")[0]), password='a "quoted" \\ pass'
        ).ping()
    finally:
        proc.stop()


def test_start_redis_with_appendonly_and_fixed_port(tmp_path: Path) -> None:
    port = free_port()
    proc, url = start_redis(tmp_path, port, appendonly=True)
    try:
        assert url.endswith(f"@127.0.0.1:{port}/0")
        client = redis.Redis.from_url(url)
        assert client.config_get("appendonly")["appendonly"] == "yes"
        client.close()
        with pytest.raises(CanaryError, match="Address already in use"):
            start_redis(tmp_path / "second", port)
    finally:
        proc.stop()


def test_a_command_that_cannot_run_raises(tmp_path: Path) -> None:
    with pytest.raises(CanaryError, match="cannot start"):
        ManagedProcess("nothing", [str(tmp_path / "no-such-binary")]).start()


def test_a_process_that_dies_early_fails_with_its_log(tmp_path: Path) -> None:
    proc = ManagedProcess(
        "crasher",
        [sys.executable, "-c", "import sys; print('bad config line 3'); sys.exit(4)"],
        log_path=tmp_path / "crasher.log",
    ).start()
    with pytest.raises(CanaryError) as err:
        proc.wait_for_port("127.0.0.1", free_port(), timeout=10)
    assert "exited with status 4" in str(err.value)
    assert "bad config line 3" in str(err.value)
    proc.stop()


def test_waits_time_out_with_the_log_tail(tmp_path: Path) -> None:
    code = "import time; print('starting up', flush=True); time.sleep(60)"
    with ManagedProcess("slow", [sys.executable, "-c", code], log_path=tmp_path / "s.log") as proc:
        assert "starting up" in proc.wait_for_log("starting", timeout=START_CEILING_S)
        with pytest.raises(CanaryError, match=r"no log line .* after 0.3 s(.|\n)*starting up"):
            proc.wait_for_log("ready", timeout=0.3)


def test_stop_kills_the_whole_group_and_escalates(tmp_path: Path) -> None:
    # The shell ignores SIGTERM and has a child of its own: both must go.
    script = "trap '' TERM; sleep 300 & echo child $!; wait"
    proc = ManagedProcess("stubborn", ["sh", "-c", script], log_path=tmp_path / "st.log").start()
    child = int(proc.wait_for_log("child", timeout=START_CEILING_S).split()[1])
    began = time.monotonic()
    status = proc.stop(timeout=0.5)
    assert status == -signal.SIGKILL  # escalated
    # ... once SIGTERM had had its 0.5 s (a lower bound: a busy machine only adds to it).
    assert time.monotonic() - began >= 0.5
    assert proc.pid is not None
    assert _wait_gone([proc.pid, child]) == []
    assert not proc.alive


def test_fleet_starts_runs_tasks_and_stops(tmp_path: Path, tiny_app: dict[str, str]) -> None:
    fleet = LocalFleet(
        tmp_path,
        probe_queues=["canary.probe.default", "canary.probe.eu"],
        probe_concurrency=4,
        control_concurrency=2,
        celery_app="tinyapp:app",
        env=tiny_app,
    )
    with fleet:
        assert fleet.startup_seconds is not None
        assert fleet.status() == {"redis": True, "control-worker": True, "probe-worker": True}
        assert (fleet.log_dir / "control-worker.log").exists()
        client = Celery(broker=fleet.redis_url, backend=fleet.redis_url, set_as_current=False)
        client.conf.update(accept_content=["json"], result_accept_content=["json"])
        assert fleet.control_worker is not None and fleet.probe_worker is not None
        on_control = client.send_task("tiny.whoami", queue="canary.control")
        on_probe = client.send_task("tiny.whoami", queue="canary.probe.eu")
        assert on_control.get(timeout=20) == fleet.control_worker.pid
        assert on_probe.get(timeout=20) == fleet.probe_worker.pid
        assert client.send_task("tiny.add", (2, 3), queue="canary.probe.default").get(20) == 5
        client.close()
        pids = [p.pid for p in fleet.processes() if p.pid is not None]
        assert len(pids) == 3
    assert _wait_gone(pids, timeout=1) == []
    assert fleet.status() == {"redis": False, "control-worker": False, "probe-worker": False}
    with pytest.raises(CanaryError, match="until it is started"):
        _ = fleet.redis_url


def test_fleet_restarts_its_beat_and_redis_in_place(
    tmp_path: Path, tiny_app: dict[str, str]
) -> None:
    fleet = LocalFleet(tmp_path, celery_app="tinyapp:app", env=tiny_app, beat=True, appendonly=True)
    with fleet:
        url = fleet.redis_url
        redis.Redis.from_url(url).set("kept", "1")
        assert fleet.beat_process is not None and fleet.redis is not None
        old_beat, old_redis = fleet.beat_process.pid, fleet.redis.pid
        fleet.restart_beat()
        fleet.restart_redis()
        assert fleet.beat_process.alive and fleet.beat_process.pid != old_beat
        assert fleet.redis.alive and fleet.redis.pid != old_redis
        assert fleet.redis_url == url  # same port, same password
        assert redis.Redis.from_url(url).get("kept") == b"1"


def test_fleet_uses_a_given_redis(tmp_path: Path, tiny_app: dict[str, str], redis_url: str) -> None:
    with LocalFleet(
        tmp_path, redis_url=redis_url, log_level="WARNING", celery_app="tinyapp:app", env=tiny_app
    ) as fleet:
        assert fleet.redis is None
        assert fleet.redis_url == redis_url
        assert fleet.status() == {"redis": True, "control-worker": True, "probe-worker": True}
    assert redis.Redis.from_url(redis_url).ping()


def test_fleet_that_cannot_start_fails_with_the_log_and_leaves_nothing(tmp_path: Path) -> None:
    fleet = LocalFleet(tmp_path, celery_app="no_such_module_xyz:app")
    with pytest.raises(CanaryError) as err:
        fleet.start()
    assert "control-worker" in str(err.value)
    assert "no_such_module_xyz" in str(err.value)
    assert not any(fleet.status().values())


CHILD = """
import json, sys, threading, time
from pathlib import Path
from canary.local.demo import start_demo_service
from canary.local import LocalFleet, ManagedProcess, free_port, start_redis

workdir = Path(sys.argv[1])
mode = sys.argv[2]
procs = []
if mode == "fleet":
    fleet = LocalFleet(workdir, celery_app="tinyapp:app", probe_concurrency=2)
    fleet.start()
    procs += fleet.processes()
    procs.append(start_demo_service("stable", free_port(), workdir=workdir))
    # A grandchild in a child's process group: only the group kill can reach it.
    shell = ManagedProcess("shell", ["sh", "-c", "sleep 300 & echo child $!; wait"],
                           log_path=workdir / "shell.log").start()
    procs.append(shell)
    extra = [int(shell.wait_for_log("child", 120).split()[1])]
else:
    # Started from a thread that then ends: PDEATHSIG cannot be used, the watchdog must act.
    out = []
    t = threading.Thread(target=lambda: out.append(start_redis(workdir)[0]))
    t.start(); t.join()
    procs += out
    extra = []
print(json.dumps([p.pid for p in procs] + extra), flush=True)
time.sleep(300)
"""


def _start_parent(
    tmp_path: Path, mode: str, env: dict[str, str]
) -> tuple[subprocess.Popen[str], list[int]]:
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(CHILD))
    parent = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    assert parent.stdout is not None and parent.stderr is not None
    line = parent.stdout.readline()
    if not line:
        parent.kill()
        pytest.fail(f"the parent process did not start its children:\n{parent.stderr.read()}")
    return parent, json.loads(line)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_no_orphans_when_the_parent_dies(
    tmp_path: Path, tiny_app: dict[str, str], sig: signal.Signals
) -> None:
    parent, pids = _start_parent(tmp_path, "fleet", tiny_app)
    assert len(pids) == 6  # redis, 2 workers, demo, shell and its sleep
    assert not any(_gone(p) for p in pids)
    parent.send_signal(sig)
    # Ceilings for a busy machine: the workers' warm shutdowns run side by side, but may be slow.
    parent.wait(timeout=120)
    assert _wait_gone(pids, timeout=60) == [], f"orphans left after {sig.name}"
    if sig == signal.SIGTERM:
        assert parent.returncode == 128 + signal.SIGTERM


def test_no_orphans_from_a_thread_when_the_parent_is_killed(
    tmp_path: Path, tiny_app: dict[str, str]
) -> None:
    parent, pids = _start_parent(tmp_path, "thread", tiny_app)
    assert len(pids) == 1
    time.sleep(0.5)
    assert not _gone(pids[0]), "a child started from an ended thread must live on"
    parent.kill()
    parent.wait(timeout=60)
    assert _wait_gone(pids, timeout=60) == []
