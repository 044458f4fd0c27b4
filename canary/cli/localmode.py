"""`canary local up|down|status`: a local fleet (Redis, workers) kept running in the background."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

from canary.errors import CanaryError
from canary.local.procs import pid_alive
from canary.local.state import home, read_state, remove_state, state_file

UP_TIMEOUT_S = 60.0


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
    remove_state(workdir)
    log = workdir / "supervisor.log"
    with open(log, "ab") as out:
        # A new session: the fleet outlives this command and the terminal it ran in.
        proc = subprocess.Popen(
            [sys.executable, "-m", "canary.local.supervisor", str(workdir), args.queues],
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
                f"Flower: {state['flower_url']} (user {state['flower_user']}, password in {state_file(workdir)})"
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
    remove_state(workdir)
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
