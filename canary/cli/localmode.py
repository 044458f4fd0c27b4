"""`canary local up|down|status`: a local fleet (Redis, workers) kept running in the background."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from canary.errors import CanaryError
from canary.procs import pid_alive

UP_TIMEOUT_S = 60.0


def home() -> Path:
    """Where the background fleet keeps its state and logs (CANARY_HOME, else ~/.canary/local)."""
    return Path(os.environ.get("CANARY_HOME") or Path.home() / ".canary" / "local")


def _state_file(workdir: Path) -> Path:
    return workdir / "state.json"


def read_state(workdir: Path | None = None) -> dict[str, Any] | None:
    """The running background fleet's state, or None when there is none (stale files ignored)."""
    path = _state_file(workdir or home())
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if pid_alive(int(state.get("pid", 0))) else None


def local_redis_url() -> str | None:
    state = read_state()
    return str(state["redis_url"]) if state else None


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("local", help="run a local fleet (Redis and workers) in the background")
    ls = p.add_subparsers(dest="local_command", metavar="ACTION")
    ls.required = True
    up = ls.add_parser("up", help="start Redis and workers in the background")
    up.add_argument(
        "--queues", default="default", help="probe environments, comma-separated (default: default)"
    )
    up.set_defaults(func=cmd_up)
    down = ls.add_parser("down", help="stop the background fleet and everything it started")
    down.set_defaults(func=cmd_down)
    status = ls.add_parser("status", help="is the background fleet running, and where")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)


def cmd_up(args: argparse.Namespace) -> int:
    workdir = home()
    state = read_state(workdir)
    if state:
        print(f"already running (pid {state['pid']})\nexport CANARY_REDIS_URL={state['redis_url']}")
        return 0
    workdir.mkdir(parents=True, exist_ok=True)
    _state_file(workdir).unlink(missing_ok=True)
    log = workdir / "supervisor.log"
    with open(log, "ab") as out:
        # A new session: the fleet outlives this command and the terminal it ran in.
        proc = subprocess.Popen(
            [sys.executable, "-m", "canary.cli.localmode", str(workdir), args.queues],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + UP_TIMEOUT_S
    while time.monotonic() < deadline:
        state = read_state(workdir)
        if state:
            print(f"local fleet up (pid {state['pid']}, logs in {state['log_dir']})")
            print(
                f"Flower: {state['flower_url']} (user {state['flower_user']}, password in {_state_file(workdir)})"
            )
            print(f"export CANARY_REDIS_URL={state['redis_url']}")
            return 0
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    if proc.poll() is None:
        proc.terminate()
    tail = log.read_text(errors="replace").splitlines()[-15:]
    raise CanaryError("the local fleet did not start:\n" + "\n".join(tail))


def cmd_down(args: argparse.Namespace) -> int:
    workdir = home()
    state = read_state(workdir)
    if not state:
        print("no local fleet is running")
        return 0
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid_alive(pid):
        # Its children die with it (PDEATHSIG and the process watchdog), so this still cleans up.
        os.kill(pid, signal.SIGKILL)
    _state_file(workdir).unlink(missing_ok=True)
    print("local fleet stopped")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    state = read_state()
    if args.json:
        shown = {k: v for k, v in (state or {}).items() if k != "flower_password"}
        print(json.dumps({"running": bool(state), **shown}))
        return 0 if state else 1
    if not state:
        print("no local fleet is running (start one with `canary local up`)")
        return 1
    print(
        f"running: pid {state['pid']}, since {time.strftime('%H:%M:%S', time.localtime(state['started_at']))}"
    )
    print(f"redis   {state['redis_url']}")
    print(f"flower  {state.get('flower_url')} (user {state.get('flower_user')})")
    print(f"queues  {', '.join(state['queues'])}")
    print(f"logs    {state['log_dir']}")
    return 0


def serve(workdir: Path, environments: str) -> int:
    """The background supervisor: runs the fleet until SIGTERM, then stops all of it."""
    from canary.local import LocalFleet
    from canary.settings import load_settings

    prefix = load_settings().probe_queue_prefix
    queues = [f"{prefix}.{env.strip()}" for env in environments.split(",") if env.strip()]
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    fleet = LocalFleet(workdir, probe_queues=queues, probe_concurrency=64, beat=True)
    fleet.start()
    flower = None
    try:
        from canary.flower import start_flower

        flower, flower_url, password = start_flower(workdir, fleet.redis_url)
        state = {
            "pid": os.getpid(),
            "redis_url": fleet.redis_url,
            "flower_url": flower_url,
            "flower_user": "canary",
            "flower_password": password,
            "queues": [load_settings().control_queue, *queues],
            "log_dir": str(fleet.log_dir),
            "started_at": time.time(),
        }
        tmp = _state_file(workdir).with_suffix(".tmp")
        # The file holds Flower's password: readable by its owner only.
        tmp.touch(mode=0o600)
        tmp.write_text(json.dumps(state))
        tmp.replace(_state_file(workdir))
        while not stop:
            time.sleep(0.5)
    finally:
        _state_file(workdir).unlink(missing_ok=True)
        if flower is not None:
            flower.stop()
        fleet.stop()
    return 0


if __name__ == "__main__":
    sys.exit(serve(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "default"))
