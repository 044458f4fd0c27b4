"""`canary worker`: start a probe (or control) worker on this host, consuming named queues."""

from __future__ import annotations

import argparse
import os
import socket
import sys

from canary.cli.helptext import HelpFormatter, epilog
from canary.errors import CanaryError
from canary.settings import load_settings

DEFAULT_CONCURRENCY = 128
DEFAULT_PROBE_THREADS = 256


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "worker",
        help="start a worker on this host for probe environments (or the control queue)",
        description=(
            "Start a Celery worker (threads pool, one process) for the given environments. "
            "Example on a new test host: CANARY_REDIS_URL=redis://broker:6379/0 "
            "canary worker --queues eu-west,production --concurrency 64"
        ),
        epilog=epilog(
            [
                "CANARY_REDIS_URL=redis://:PASSWORD@broker:6379/0 canary worker --queues eu-west",
                "canary worker --queues control   # the coordinator's queue",
            ],
            {0: "stopped", 1: "Celery could not start", 2: "invalid arguments"},
        ),
        formatter_class=HelpFormatter,
    )
    _arguments(p)
    p.set_defaults(func=cmd_worker)


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--queues",
        "-Q",
        action="append",
        required=True,
        help="comma-separated environment names (each is the queue canary.probe.NAME), "
        "'control' for the coordinator's queue, or full queue names; may repeat",
    )
    p.add_argument(
        "--concurrency",
        "-c",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=f"tasks at once: probe batches paced side by side (default {DEFAULT_CONCURRENCY})",
    )
    p.add_argument(
        "--probe-threads",
        type=int,
        default=None,
        help=f"transactions in flight in this process across its batches "
        f"(default {DEFAULT_PROBE_THREADS}; CANARY_PROBE_THREADS)",
    )
    p.add_argument("--broker", help="Redis URL (default: CANARY_REDIS_URL)")
    p.add_argument("--host-label", help="how results name this host (default: the hostname)")
    p.add_argument("--name", help="Celery node name (default: canary-QUEUES-PID@HOST)")
    p.add_argument("--loglevel", "-l", default="INFO", help="log level (default INFO)")


def queue_names(specs: list[str]) -> list[str]:
    """``["eu,control"]`` → ``["canary.probe.eu", "canary.control"]`` (order kept, no repeats)."""
    settings = load_settings()
    out: list[str] = []
    for spec in specs:
        for name in (n.strip() for n in spec.split(",")):
            if not name:
                continue
            if name == "control":
                queue = settings.control_queue
            elif name == settings.control_queue or name.startswith(
                settings.probe_queue_prefix + "."
            ):
                queue = name
            else:
                queue = f"{settings.probe_queue_prefix}.{name}"
            if queue not in out:
                out.append(queue)
    if not out:
        raise CanaryError("--queues: name at least one environment or 'control'")
    return out


def worker_argv(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """The command line and environment `canary worker` runs (exposed for tests)."""
    if args.concurrency < 1:
        raise CanaryError("--concurrency must be at least 1")
    queues = queue_names(args.queues)
    env = dict(os.environ)
    broker = args.broker or load_settings().redis_url
    if not broker:
        raise CanaryError("no broker: pass --broker redis://HOST:6379/0 or set CANARY_REDIS_URL")
    env["CANARY_REDIS_URL"] = broker
    if args.probe_threads is not None:
        env["CANARY_PROBE_THREADS"] = str(max(1, args.probe_threads))
    if args.host_label:
        env["CANARY_HOST"] = args.host_label
    label = "-".join(q.rsplit(".", 1)[-1] for q in queues)[:40]
    name = args.name or f"canary-{label}-{os.getpid()}@{socket.gethostname()}"
    argv = [
        sys.executable, "-m", "celery", "-A", "workers.app:app", "worker",
        "-Q", ",".join(queues),
        "-n", name,
        # Threads: probes wait on the network, and a single process is one thing to stop.
        "--pool", "threads",
        "-c", str(args.concurrency),
        "--without-gossip", "--without-mingle",
        "-l", args.loglevel,
    ]  # fmt: skip
    return argv, env


def cmd_worker(args: argparse.Namespace) -> int:
    argv, env = worker_argv(args)
    sys.stdout.flush()
    sys.stderr.flush()
    # Replaced rather than wrapped: signals reach Celery directly, and `kill` stops one process.
    os.execve(sys.executable, argv, env)
    return 0  # pragma: no cover - execve does not return


def main(argv: list[str] | None = None) -> int:
    """``python -m canary.cli.worker ...``: the same command without the `canary` front end."""
    p = argparse.ArgumentParser(prog="canary worker")
    _arguments(p)
    args = p.parse_args(argv)
    try:
        return cmd_worker(args)
    except CanaryError as exc:
        print(f"canary worker: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
