"""The `canary exporter` subcommand: serve Prometheus metrics of the rollouts in CANARY_REDIS_URL."""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from canary.cli.helptext import HelpFormatter, epilog


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "exporter",
        help="serve Prometheus metrics of the rollouts in CANARY_REDIS_URL",
        description="Serve /metrics (rollout state, weight, per-version success and latency, "
        "decision and alert counts) read from the Redis named by CANARY_REDIS_URL.",
        epilog=epilog(
            [
                "canary exporter --port 9808",
                "canary exporter --host 0.0.0.0   # inside a container",
            ],
            {0: "stopped by SIGINT or SIGTERM", 1: "Redis unreachable, or the port is in use"},
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("--port", type=int, default=9808, help="port to listen on (default 9808)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; 0.0.0.0 inside a container)",
    )
    p.add_argument("--limit", type=int, default=50, help="newest rollouts exported (default 50)")
    p.set_defaults(func=cmd_exporter)


def cmd_exporter(args: argparse.Namespace) -> int:
    from canary.cli.operate import fleet_url
    from canary.exporter import serve
    from canary.store import Store

    # Not pinged first: with Redis away the exporter still serves, saying canary_store_up 0.
    store = Store.from_url(fleet_url())
    server, thread = serve(store, host=args.host, port=args.port, limit=args.limit)
    host, port = server.server_address[:2]
    print(f"canary exporter: serving http://{host!s}:{port}/metrics", flush=True)
    stopped = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    stopped.wait()
    server.shutdown()
    thread.join(timeout=5)
    return 0
