"""`canary local up|down|status`: a local fleet (Redis, workers) kept running in the background."""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from canary.cli.helptext import HelpFormatter, epilog
from canary.errors import CanaryError
from canary.local.procs import pid_alive, pid_running
from canary.local.state import home, read_state, remove_state, state_file
from canary.settings import redact_url

# A ceiling: on a busy machine the workers, beat and Flower may each take up to a minute.
UP_TIMEOUT_S = 240.0
DOWN_TIMEOUT_S = 30.0
# How long `down --force` lets the coordinator apply an abort before ending the rollout itself.
ABORT_WAIT_S = 10.0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "local",
        help="run a local fleet (Redis and workers) in the background",
        description="A fleet on this machine that outlives the command: Redis with a generated "
        "password, a control and a probe worker, beat and Flower, watched by a supervisor that "
        "restarts what dies. Every canary command on this machine finds it without "
        "CANARY_REDIS_URL (the URL and passwords are in a 0600 state file under $CANARY_HOME).",
        epilog=epilog(
            ["canary local up", "canary local status --json", "canary local down --force"],
            {0: "done (status: every process is up)", 1: "refused or failed (see the message)"},
        ),
        formatter_class=HelpFormatter,
    )
    ls = p.add_subparsers(dest="local_command", metavar="ACTION")
    ls.required = True
    up = ls.add_parser(
        "up",
        help="start Redis and workers in the background",
        description="Start the background fleet (one at a time: a second `up` says it runs).",
        epilog=epilog(
            ["canary local up", "canary local up --queues default,eu"],
            {0: "started, or already running", 1: "could not start (the log says why)"},
        ),
        formatter_class=HelpFormatter,
    )
    up.add_argument(
        "--queues", default="default", help="probe environments, comma-separated (default: default)"
    )
    up.set_defaults(func=cmd_up)
    down = ls.add_parser(
        "down",
        help="stop the background fleet and everything it started (refused while rollouts run)",
        description="Stop the background fleet. While rollouts run it refuses and lists them, "
        "so that no traffic is left on a canary; --force aborts them first (traffic to stable, "
        "recorded), then stops.",
        epilog=epilog(
            ["canary local down", "canary local down --force"],
            {0: "stopped (or nothing ran)", 1: "refused: rollouts are running"},
        ),
        formatter_class=HelpFormatter,
    )
    down.add_argument(
        "--force",
        action="store_true",
        help="abort the running rollouts first (traffic to stable, recorded), then stop",
    )
    down.set_defaults(func=cmd_down)
    status = ls.add_parser(
        "status",
        help="is the background fleet running, where, and is each process up",
        description="Where the fleet is (Flower, Redis with its password redacted) and the "
        "health of each process it supervises.",
        epilog=epilog(
            ["canary local status", "canary local status --json"],
            {0: "running, every process up", 1: "not running, or a process is down"},
        ),
        formatter_class=HelpFormatter,
    )
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)


def _print_where(state: dict[str, Any]) -> None:
    print(
        f"Flower: {state['flower_url']} (user {state['flower_user']}, password in {state_file()})"
    )
    print(
        f"Redis: {redact_url(state['redis_url'])} (password in {state_file()}); canary commands "
        "on this machine find the fleet without CANARY_REDIS_URL"
    )


def cmd_up(args: argparse.Namespace) -> int:
    workdir = home()
    workdir.mkdir(parents=True, exist_ok=True)
    # Two `local up` at once must not start two fleets: the second waits here for the first.
    with open(workdir / "up.lock", "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        state = read_state(workdir)
        if state:
            print(f"already running (pid {state['pid']})")
            _print_where(state)
            return 0
        return _start_supervisor(args, workdir)


def _start_supervisor(args: argparse.Namespace, workdir: Any) -> int:
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
            _print_where(state)
            return 0
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    if proc.poll() is None:
        proc.terminate()
    tail = log.read_text(errors="replace").splitlines()[-15:]
    raise CanaryError("the local fleet did not start:\n" + "\n".join(tail))


def _unfinished(redis_url: str) -> list[dict[str, Any]]:
    from canary.rollout import state as st
    from canary.store import Store

    store = Store.from_url(redis_url)
    return [r for r in store.list_rollouts(limit=1000) if not st.is_final(r["state"])]


def _abort(redis_url: str, rollout_id: str) -> str:
    """Abort one rollout (the coordinator sends its traffic to stable); how it ended."""
    from canary.cli.commands import send_command
    from canary.cli.rollouts import NoDispatch
    from canary.rollout import controller
    from canary.rollout import state as st
    from canary.store import Store

    store = Store.from_url(redis_url)
    send_command(redis_url, store, rollout_id, "abort", wait_s=ABORT_WAIT_S)

    def ended() -> dict[str, Any] | None:
        deadline = time.monotonic() + ABORT_WAIT_S
        while time.monotonic() < deadline:
            record = store.load_rollout(rollout_id)
            if record is None or st.is_final(record["state"]):
                return record
            time.sleep(0.2)
        return store.load_rollout(rollout_id)

    record = ended()
    if record is not None and not st.is_final(record["state"]):
        # The coordinator did not get to it (workers busy or down): end it from here.
        ctx = controller.Context(store=store, dispatcher=NoDispatch())
        controller.fail_safe(ctx, rollout_id, "aborted by `canary local down --force`")
        record = store.load_rollout(rollout_id)
    if record is None:
        return "gone"
    return f"{record['state']} at weight {record.get('weight')}%"


def cmd_down(args: argparse.Namespace) -> int:
    workdir = home()
    state = read_state(workdir)
    if not state:
        print("no local fleet is running")
        return 0
    try:
        running = _unfinished(state["redis_url"])
    except Exception as exc:
        if not args.force:
            raise CanaryError(
                f"cannot tell which rollouts run on the local fleet ({type(exc).__name__}); "
                "`canary local down --force` stops it anyway"
            ) from None
        running = []
    if running and not args.force:
        print(
            f"refusing to stop the local fleet: {len(running)} rollout(s) still running would "
            "keep their traffic where it is:",
            file=sys.stderr,
        )
        for r in running:
            print(f"  {r['id']}  {r['state']} at weight {r.get('weight')}%", file=sys.stderr)
        print(
            "abort them (`canary rollout abort ID`), or `canary local down --force` aborts them "
            "all and then stops",
            file=sys.stderr,
        )
        return 1
    for r in running:
        print(f"aborting {r['id']} …", flush=True)
        print(f"  {r['id']}: {_abort(state['redis_url'], r['id'])}", flush=True)
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + DOWN_TIMEOUT_S
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid_alive(pid):
        # Its children die with it (PDEATHSIG and the process watchdog), so this still cleans up.
        os.kill(pid, signal.SIGKILL)
    remove_state(workdir)
    print("local fleet stopped")
    return 0


def _health(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each process as the supervisor last saw it, checked again against the live pids."""
    out = {}
    for name, seen in (state.get("processes") or {}).items():
        pid = seen.get("pid")
        up = bool(seen.get("alive")) and isinstance(pid, int) and pid_running(pid)
        out[name] = {**seen, "alive": up}
    return out


def cmd_status(args: argparse.Namespace) -> int:
    state = read_state()
    health = _health(state) if state else {}
    healthy = bool(state) and all(h["alive"] for h in health.values())
    if args.json:
        shown = {k: v for k, v in (state or {}).items() if k != "flower_password"}
        if "redis_url" in shown:
            shown["redis_url"] = redact_url(shown["redis_url"])
        shown["processes"] = health
        print(json.dumps({"running": bool(state), "healthy": healthy, **shown}))
        return 0 if healthy else 1
    if not state:
        print("no local fleet is running (start one with `canary local up`)")
        return 1
    since = time.strftime("%H:%M:%S", time.localtime(state["started_at"]))
    print(f"{'running' if healthy else 'DEGRADED'}: supervisor pid {state['pid']}, since {since}")
    print(f"redis   {redact_url(state['redis_url'])}")
    print(f"flower  {state.get('flower_url')} (user {state.get('flower_user')})")
    print(f"queues  {', '.join(state['queues'])}")
    print(f"logs    {state['log_dir']}")
    for name, h in health.items():
        if h["alive"]:
            word = f"up (pid {h['pid']})"
        elif h.get("next_restart_at"):
            wait = max(0.0, float(h["next_restart_at"]) - time.time())
            word = f"DOWN (exit status {h.get('last_exit')}; restart in {wait:.0f} s)"
        else:
            word = f"DOWN (exit status {h.get('last_exit')})"
        restarts = f", restarted {h['restarts']}x" if h.get("restarts") else ""
        print(f"  {name:<15} {word}{restarts}")
    return 0 if healthy else 1
