"""`canary run` and `canary demo`: rollouts in local mode, followed live to their end."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console

from canary.cli.exits import EXIT_FAILURE, EXIT_OK, EXIT_ROLLED_BACK
from canary.cli.follow import Followed, follow
from canary.cli.helptext import HelpFormatter, epilog
from canary.errors import CanaryError, StoreError
from canary.local.lastwill import StableRoute, write_will
from canary.local.procs import ManagedProcess, set_last_will
from canary.rollout import controller
from canary.rollout import state as st
from canary.rollout.config import RolloutConfig, load_rollout
from canary.settings import load_settings, redact_url
from canary.store import Store

EXIT_BY_STATE = {
    "promoted": EXIT_OK,
    "rolled_back": EXIT_ROLLED_BACK,
    "aborted": EXIT_ROLLED_BACK,
    "failed": EXIT_FAILURE,
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="run one rollout in local mode and follow it to the end",
        description="Run one rollout and follow it live, every step, traffic shift and decision "
        "with its reasons. It uses the fleet that is running (CANARY_REDIS_URL, else `canary "
        "local up`), or starts a private Redis and workers and stops them at the end, keeping "
        "the record, recording and report under $CANARY_HOME/runs/ID/. Ctrl-C, SIGTERM and "
        "SIGHUP send the traffic to stable and end the rollout as failed with the reason "
        "(exit 1).",
        epilog=epilog(
            [
                "canary run configs/rollouts/example.yaml",
                "canary run rollout.yaml --json | tail -n 1",
            ],
            {
                0: "promoted",
                1: "any other failure (the rollout failed, Redis was lost)",
                2: "invalid input (every problem as FILE:LINE:COL)",
                3: "rolled back or aborted (traffic on stable)",
            },
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("rollout", help="rollout file (YAML or JSON)")
    p.add_argument(
        "--json",
        action="store_true",
        help="print the final rollout record as JSON on the last line",
    )
    p.add_argument(
        "--workdir", help="where local Redis and workers keep logs (default: a temporary folder)"
    )
    p.set_defaults(func=cmd_run)

    d = sub.add_parser(
        "demo",
        help="run the demo: a healthy canary promoted, a faulty one rolled back",
        description="Start Redis, workers, demo shops behind HAProxy and the dashboard on this "
        "machine, run two real rollouts side by side (a healthy canary, and one that turns bad "
        "once it has traffic), print every step, traffic shift and decision, and stop "
        "everything it started. ./scripts/demo runs it.",
        epilog=epilog(
            ["canary demo", "canary demo --interval 2 --workdir /tmp/demo   # faster; keep logs"],
            {0: "both rollouts ended as designed", 1: "they did not (see the output and logs)"},
        ),
        formatter_class=HelpFormatter,
    )
    d.add_argument("--interval", type=float, default=4.0, help="seconds per step (default 4)")
    d.add_argument("--workdir", help="where logs go (default: a temporary folder)")
    d.set_defaults(func=cmd_demo)


def probe_queues(config: RolloutConfig) -> list[str]:
    prefix = load_settings().probe_queue_prefix
    return [f"{prefix}.{env}" for env in config.probes.environments]


def _consumed_queues(redis_url: str) -> set[str]:
    """Queues that live workers on this broker consume (empty when none answer)."""
    from workers.app import client

    app = client(redis_url)
    try:
        Store.from_url(redis_url).r.ping()
        replies = app.control.inspect(timeout=1.0).active_queues() or {}
    except Exception as exc:
        raise CanaryError(f"cannot reach Redis at {redact_url(redis_url)}: {exc}") from None
    return {q["name"] for queues in replies.values() for q in queues}


@dataclass(frozen=True)
class RunFleet:
    """The fleet a `canary run` uses: its Redis URL, and the Redis it started itself, if any."""

    url: str
    redis: ManagedProcess | None = None

    @property
    def private(self) -> bool:
        """Whether the records live in a Redis that goes away when the run ends."""
        return self.redis is not None


@contextlib.contextmanager
def local_fleet(queues: list[str], workdir: Path | None, console: Console) -> Iterator[RunFleet]:
    """Yield a fleet with workers consuming ``queues``, starting whatever is missing."""
    from canary.local import LocalFleet
    from canary.local.state import fleet_redis_url

    url = fleet_redis_url()
    control = load_settings().control_queue
    if url and {control, *queues} <= _consumed_queues(url):
        yield RunFleet(url)
        return
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="canary-")))
        # A probe batch holds a worker thread while it paces its runs over the step, so local
        # mode gives the probe worker room for every batch of a few concurrent rollouts.
        fleet = LocalFleet(workdir, redis_url=url, probe_queues=queues, probe_concurrency=64)
        what = "workers" if url else "Redis and workers"
        console.print(
            f"starting local {what} (logs in {fleet.log_dir}) …", style="dim", highlight=False
        )
        started = time.monotonic()
        stack.callback(fleet.stop)
        fleet.start()
        console.print(
            f"local fleet ready in {time.monotonic() - started:.1f}s", style="dim", highlight=False
        )
        os.environ["CANARY_REDIS_URL"] = fleet.redis_url
        yield RunFleet(fleet.redis_url, fleet.redis)


def start(
    redis_url: str,
    config: RolloutConfig,
    transactions: list[dict[str, Any]],
    *,
    replace: bool = False,
    retry_of: str | None = None,
    rollout_id: str | None = None,
) -> str:
    """Send ``canary.start_rollout`` to the fleet; the id is made here (or given, by a caller
    that must know it before the publish) so we can follow at once.

    ``replace``: the fleet aborts the service's running rollout first (else it refuses).
    """
    from canary.local.flower import task_argsrepr
    from workers.app import client

    rollout_id = rollout_id or controller.new_rollout_id(config.name)
    with client(redis_url) as app:
        args: list[Any] = [config.model_dump(mode="json"), transactions, rollout_id]
        if replace or retry_of:
            args.append(replace)
        if retry_of:
            args.append(retry_of)
        # Flower shows argsrepr: the rollout and its versions rather than the whole config.
        app.send_task(
            "canary.start_rollout", args=args, argsrepr=task_argsrepr("canary.start_rollout", args)
        )
        _hold_after_publish()
    return rollout_id


# Tests set it to a file: start() creates the file once its task is sent and stays there until a
# signal ends the wait, so that a signal lands inside the publish exactly, not by luck of timing.
HOLD_AFTER_PUBLISH_ENV = "CANARY_TEST_HOLD_AFTER_PUBLISH"


def _hold_after_publish() -> None:
    hold = os.environ.get(HOLD_AFTER_PUBLISH_ENV)
    if not hold:
        return
    Path(hold).touch()
    while True:
        time.sleep(0.05)


def expected_duration(config: RolloutConfig) -> float:
    """A generous bound on how long a rollout can last; past it, `run` gives up and fails safe."""
    steps = len(config.schedule.weights()) + int(config.schedule.isolated_check)
    per_step = config.schedule.step_interval + controller.STRAGGLER_GRACE_S
    return steps * per_step * (config.analysis.max_holds + 1) + 60.0


class Stopped(BaseException):
    """SIGTERM or SIGHUP reached `canary run`: it ends the rollout as Ctrl-C does.

    A BaseException, as KeyboardInterrupt is, so that no ``except Exception`` swallows it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class RedisLost(Exception):
    """The Redis holding the rollout's record is gone (for good, or past the deadline)."""


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
# The signals that could cut short the fail safe itself (a second Ctrl-C, a hasty `timeout`).
_SHIELDED = (signal.SIGINT, *STOP_SIGNALS)


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signum)


@contextlib.contextmanager
def _signals_stop_the_run() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP raise Stopped (what `timeout`, systemd, CI send), and
    SIGINT raises KeyboardInterrupt.

    SIGINT explicitly: a process started with it ignored (a script's ``cmd &``, without job
    control) keeps ignoring it, and a Ctrl-C or ``kill -INT`` would leave the rollout running.
    """
    old = {sig: signal.signal(sig, _raise_stopped) for sig in STOP_SIGNALS}
    old[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    """Ignore stop signals while traffic is being sent to stable: that must not be cut short."""
    old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in _SHIELDED}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _abandon(store: Store, config: RolloutConfig, rollout_id: str, reason: str) -> str:
    """End a rollout we stop following before it ended, with traffic on stable (fail safe).

    Through the record when Redis answers (the reason is then recorded), else straight through
    the router from the config we hold. Returns what was done, for the operator.
    """
    ctx = controller.Context(store=store, dispatcher=NoDispatch())
    try:
        controller.fail_safe(ctx, rollout_id, reason)
        record = store.load_rollout(rollout_id)
    except Exception as exc:
        record, recorded = None, f"not recorded ({type(exc).__name__}: {exc})"
    else:
        recorded = "recorded in the rollout"
    if record is not None and int(record.get("weight") or 0) == 0:
        return f"traffic sent to stable, rollout {record.get('state')} ({recorded})"
    # No record yet, or its router failed: the router straight from the config, once more.
    failed = StableRoute.of(config, rollout_id).send(int((record or {}).get("step") or 0))
    if failed:
        return f"COULD NOT send traffic to stable: {failed}; {recorded}"
    return f"traffic sent to stable through the router ({recorded})"


def _wait_for_redis(store: Store, fleet: RunFleet) -> str | None:
    """None once Redis answers again, else why it is lost (our own Redis exited: at once)."""
    from workers.tasks import redis_deadline

    deadline = time.monotonic() + redis_deadline()
    while True:
        if fleet.redis is not None and not fleet.redis.alive:
            return f"the local Redis this run started exited (status {fleet.redis.returncode})"
        try:
            store.r.ping()
            return None
        except Exception as exc:
            if time.monotonic() >= deadline:
                return f"Redis did not answer for {redis_deadline():.0f} s ({exc})"
        time.sleep(0.5)


def _follow(
    store: Store, followed: Followed, console: Console, deadline: float, fleet: RunFleet
) -> bool:
    """follow(), riding out short Redis outages; RedisLost when Redis is gone."""
    while True:
        try:
            return follow(store, [followed], console, deadline=deadline)
        except (StoreError, OSError) as exc:
            console.print(f"canary: Redis: {exc}", style="yellow", highlight=False, markup=False)
            lost = _wait_for_redis(store, fleet)
            if lost:
                raise RedisLost(lost) from None


def runs_dir() -> Path:
    """Where `canary run` keeps what is left of rollouts whose private Redis is gone."""
    from canary.local.state import home

    return home() / "runs"


def keep_record(store: Store, rollout_id: str) -> Path | None:
    """Write a rollout's record, recording and HTML report under runs_dir()/ID; the folder.

    A run's private Redis goes with it, so these files are what `canary report` and `canary
    replay` read afterwards. None (and a printed reason) when they cannot be written.
    """
    from canary import report
    from canary.replay import export_recording

    folder = runs_dir() / rollout_id
    record = store.load_rollout(rollout_id)
    if record is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "record.json").write_text(final_json(record) + "\n")
    (folder / "recording.json").write_text(json.dumps(export_recording(store, rollout_id)))
    report.write_report(report.from_store(store, rollout_id), folder / "report.html")
    return folder


class NoDispatch:
    """A dispatcher for ending a rollout from the CLI: nothing is scheduled after the end."""

    def probe(self, batch: Any, queue: str) -> None: ...

    def analyze(self, rollout_id: str, window: str, countdown: float) -> None: ...

    def check(self, rollout_id: str, window: str, countdown: float) -> None: ...

    def advance(self, rollout_id: str, step: int, attempt: int, countdown: float) -> None: ...


def final_json(record: dict[str, Any]) -> str:
    keep = (
        "id",
        "name",
        "service",
        "state",
        "outcome",
        "weight",
        "reasons",
        "predictive",
        "created_at",
        "finished_at",
        "canary_failures",
        "decisions",
    )
    return json.dumps({k: record.get(k) for k in keep}, separators=(",", ":"))


def cmd_run(args: argparse.Namespace) -> int:
    config, transactions = load_rollout(args.rollout)
    console = Console(stderr=args.json, soft_wrap=True)
    workdir = Path(args.workdir) if args.workdir else None
    with _signals_stop_the_run():
        try:
            return _run(config, transactions, console, workdir, as_json=args.json)
        except (KeyboardInterrupt, Stopped) as stop:  # before the rollout started
            console.print(
                f"canary: stopped by {_signal_name(stop)} before the rollout started",
                style="bold red",
                highlight=False,
            )
            # specs/cli.md fixes run's exit codes: a signal is "any other failure".
            return EXIT_FAILURE


def _run(
    config: RolloutConfig,
    transactions: list[dict[str, Any]],
    console: Console,
    workdir: Path | None,
    *,
    as_json: bool,
) -> int:
    with local_fleet(probe_queues(config), workdir, console) as fleet:
        store = Store.from_url(fleet.url)
        rollout_id = controller.new_rollout_id(config.name)
        # Loaded before the publish, so that a signal during this slow import starts nothing.
        import workers.app  # noqa: F401

        will: Path | None = None
        # From the publish on the rollout may exist (the task can be out before send_task
        # returns): a signal, wherever it lands, ends it on stable.
        try:
            # A private fleet dies with us, even by kill -9, and nobody would roll the rollout
            # back: our watchdog will, unless we revoke this once the rollout has ended.
            if fleet.private:
                will = runs_dir() / rollout_id / "will.json"
                set_last_will(write_will(will, StableRoute.of(config, rollout_id)))
            start(fleet.url, config, transactions, rollout_id=rollout_id)
            console.print(
                f"rollout {rollout_id}: {config.canary.url} (canary) against "
                f"{config.stable.url} (stable)",
                style="bold",
                highlight=False,
            )
            followed = Followed(rollout_id, label="")
            return _follow_to_end(store, config, followed, console, fleet, as_json=as_json)
        except (KeyboardInterrupt, Stopped) as exc:
            return _interrupted(store, config, rollout_id, console, fleet, _signal_name(exc))
        finally:
            if will is not None:
                set_last_will(None)
                will.unlink(missing_ok=True)


def _signal_name(exc: KeyboardInterrupt | Stopped) -> str:
    return signal.Signals(exc.signum if isinstance(exc, Stopped) else signal.SIGINT).name


# How long a signal that lands in the publish waits for the control worker to create the rollout
# (a ceiling: it is seconds at most, even on a busy machine), so as to end it with the reason.
CREATED_WITHIN_S = 30.0


def _created(store: Store, rollout_id: str) -> dict[str, Any] | None:
    """The rollout's record, once the control worker has created it (None: not within the
    ceiling); StoreError when Redis does not answer."""
    deadline = time.monotonic() + CREATED_WITHIN_S
    while (record := store.load_rollout(rollout_id)) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return record


def _never_created(store: Store, config: RolloutConfig, rollout_id: str) -> str:
    """The start task may still be waiting for a worker: an abort queued for its id ends it at
    its first step, before any traffic moves; the router is sent to stable meanwhile."""
    try:
        store.push_control(rollout_id, "abort")
        queued = "an abort is queued for it"
    except Exception as exc:
        queued = f"no abort could be queued ({type(exc).__name__})"
    failed = StableRoute.of(config, rollout_id).send()
    moved = f"COULD NOT send traffic to stable: {failed}" if failed else "traffic sent to stable"
    return f"{moved} through the router; the rollout was not created yet ({queued})"


def _interrupted(
    store: Store,
    config: RolloutConfig,
    rollout_id: str,
    console: Console,
    fleet: RunFleet,
    name: str,
) -> int:
    """A signal reached us while the rollout ran: traffic to stable, the reason recorded.

    One that lands once the rollout has ended (while its record is kept) leaves the traffic
    where the end put it: a promoted canary is not sent back.
    """
    reason = f"`canary run` was interrupted ({name})"
    with _shielded():
        try:
            record = _created(store, rollout_id)
        except Exception:
            # Redis does not answer: _abandon goes through the router from the config.
            done = _abandon(store, config, rollout_id, reason)
        else:
            if record is None:
                done = _never_created(store, config, rollout_id)
            elif st.is_final(str(record.get("state"))):
                done = f"the rollout had already ended ({record.get('state')}); traffic left as is"
            else:
                done = _abandon(store, config, rollout_id, reason)
        _print_kept(console, store, rollout_id, fleet)
    console.print(f"canary: interrupted by {name}: {done}", style="bold red", highlight=False)
    return EXIT_FAILURE


def _follow_to_end(
    store: Store,
    config: RolloutConfig,
    followed: Followed,
    console: Console,
    fleet: RunFleet,
    *,
    as_json: bool,
) -> int:
    """Follow the rollout until it ends, or end it with traffic on stable; the exit code."""
    rollout_id = followed.rollout_id
    try:
        finished = _follow(
            store, followed, console, time.monotonic() + expected_duration(config), fleet
        )
    except RedisLost as exc:
        with _shielded():
            failed = StableRoute.of(config, rollout_id).send()
        done = f"COULD NOT send traffic to stable: {failed}" if failed else "traffic sent to stable"
        console.print(
            f"canary: lost Redis ({exc}): {done} through the router; the rollout's record is gone",
            style="bold red",
            highlight=False,
            markup=False,
        )
        return 1
    if not finished:
        with _shielded():
            _abandon(
                store,
                config,
                rollout_id,
                "the rollout did not finish in time; is the fleet working?",
            )
        followed.final = store.load_rollout(rollout_id)
        if followed.final is None:
            raise CanaryError(f"rollout {rollout_id} did not start; check the worker logs")
    _print_kept(console, store, rollout_id, fleet)
    record = followed.final or {}
    if as_json:
        print(final_json(record), flush=True)
    return EXIT_BY_STATE.get(str(record.get("state")), EXIT_FAILURE)


def _print_kept(console: Console, store: Store, rollout_id: str, fleet: RunFleet) -> None:
    """Tell where the rollout can be read once the run has ended."""
    if not fleet.private:
        console.print(
            f"the record stays on the fleet: `canary report {rollout_id}`, "
            f"`canary export {rollout_id}`",
            style="dim",
            highlight=False,
        )
        return
    try:
        folder = keep_record(store, rollout_id)
    except Exception as exc:
        console.print(f"canary: could not keep the record: {exc}", style="yellow", highlight=False)
        return
    if folder is not None:
        console.print(
            f"record kept in {folder}: report.html, recording.json "
            f"(`canary report {folder / 'recording.json'}`), record.json",
            style="dim",
            highlight=False,
        )


def cmd_demo(args: argparse.Namespace) -> int:
    from canary.cli.demo import run_demo

    return run_demo(interval=args.interval, workdir=Path(args.workdir) if args.workdir else None)
