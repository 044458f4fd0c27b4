"""`canary run` and `canary demo`: rollouts in local mode, followed live to their end."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from canary.cli.follow import Followed, follow
from canary.errors import CanaryError
from canary.rollout import controller
from canary.rollout.config import RolloutConfig, load_rollout
from canary.settings import load_settings
from canary.store import Store

EXIT_BY_STATE = {"promoted": 0, "rolled_back": 3, "aborted": 3, "failed": 1}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run one rollout in local mode and follow it to the end")
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
        "demo", help="run the demo: a healthy canary promoted, a faulty one rolled back"
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
        raise CanaryError(f"cannot reach Redis at {redis_url} (CANARY_REDIS_URL): {exc}") from None
    return {q["name"] for queues in replies.values() for q in queues}


@contextlib.contextmanager
def local_fleet(queues: list[str], workdir: Path | None, console: Console) -> Iterator[str]:
    """Yield a Redis URL with workers consuming ``queues``, starting whatever is missing."""
    from canary.local import LocalFleet

    url = load_settings().redis_url
    control = load_settings().control_queue
    if url and {control, *queues} <= _consumed_queues(url):
        yield url
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
        fleet.start()
        stack.callback(fleet.stop)
        console.print(
            f"local fleet ready in {time.monotonic() - started:.1f}s", style="dim", highlight=False
        )
        os.environ["CANARY_REDIS_URL"] = fleet.redis_url
        yield fleet.redis_url


def start(
    redis_url: str,
    config: RolloutConfig,
    transactions: list[dict[str, Any]],
    *,
    replace: bool = False,
    retry_of: str | None = None,
) -> str:
    """Send ``canary.start_rollout`` to the fleet; the id is made here so we can follow at once.

    ``replace``: the fleet aborts the service's running rollout first (else it refuses).
    """
    from canary.flower import task_argsrepr
    from workers.app import client

    rollout_id = controller.new_rollout_id(config.name)
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
    return rollout_id


def expected_duration(config: RolloutConfig) -> float:
    """A generous bound on how long a rollout can last; past it, `run` gives up and fails safe."""
    steps = len(config.schedule.weights()) + int(config.schedule.isolated_check)
    per_step = config.schedule.step_interval + controller.STRAGGLER_GRACE_S
    return steps * per_step * (config.analysis.max_holds + 1) + 60.0


def _abandon(store: Store, rollout_id: str, reason: str) -> None:
    """Roll a rollout back from here when we stop following it before it ended (fail safe)."""
    with contextlib.suppress(Exception):
        ctx = controller.Context(store=store, dispatcher=_NoDispatch())
        controller.fail_safe(ctx, rollout_id, reason)


class _NoDispatch:
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
    with local_fleet(probe_queues(config), workdir, console) as url:
        store = Store.from_url(url)
        rollout_id = start(url, config, transactions)
        console.print(
            f"rollout {rollout_id}: {config.canary.url} (canary) against {config.stable.url} (stable)",
            style="bold",
            highlight=False,
        )
        followed = Followed(rollout_id, label="")
        try:
            finished = follow(
                store, [followed], console, deadline=time.monotonic() + expected_duration(config)
            )
        except KeyboardInterrupt:
            _abandon(store, rollout_id, "the operator interrupted `canary run`")
            raise
        if not finished:
            _abandon(store, rollout_id, "the rollout did not finish in time; is the fleet working?")
            followed.final = store.load_rollout(rollout_id)
            if followed.final is None:
                raise CanaryError(f"rollout {rollout_id} did not start; check the worker logs")
    record = followed.final or {}
    if args.json:
        print(final_json(record), flush=True)
    return EXIT_BY_STATE.get(str(record.get("state")), 1)


def cmd_demo(args: argparse.Namespace) -> int:
    from canary.cli.demo import run_demo

    return run_demo(interval=args.interval, workdir=Path(args.workdir) if args.workdir else None)
