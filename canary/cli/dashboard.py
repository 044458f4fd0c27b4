"""The `canary dashboard` subcommand: the live web view of the fleet's rollouts, behind a log-in."""

from __future__ import annotations

import argparse

from canary.cli.helptext import helped


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = helped(
        sub,
        "dashboard",
        help="serve the live web dashboard of the fleet's rollouts (log-in from the environment)",
        description="Serve a web page of the running and recent rollouts in CANARY_REDIS_URL "
        "(or the `canary local up` fleet): the weight over time, per-version success and p95 "
        "per transaction, every decision with its reasons, forecast bands, alerts, a link to "
        "the report, and pause/resume/promote/abort buttons that queue the same commands as "
        "`canary rollout ...`. Pages update live (server-sent events). Every request needs HTTP "
        "Basic credentials: user CANARY_DASHBOARD_USER (default canary), password "
        "CANARY_DASHBOARD_PASSWORD (required, 12 characters or more); there is no open mode.",
        examples=[
            "CANARY_DASHBOARD_PASSWORD=$(openssl rand -hex 16) canary dashboard --port 8090",
            "canary dashboard --host 0.0.0.0 --port 8090   # inside a container",
        ],
        exits={
            0: "stopped by SIGINT or SIGTERM",
            1: "Redis unreachable, or the address is in use",
            2: "no password in CANARY_DASHBOARD_PASSWORD, or it is too short",
        },
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8090, help="port to listen on (default 8090)")
    p.set_defaults(func=cmd_dashboard)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from canary.cli.operate import fleet_store, fleet_url
    from canary.dashboard.auth import Credentials
    from canary.dashboard.server import bind, serve

    credentials = Credentials.from_env()
    url = fleet_url()
    store = fleet_store(url)
    sock = bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in str(host) else host
    print(
        f"canary dashboard: serving http://{shown}:{port}/ (user {credentials.user}, "
        "password from CANARY_DASHBOARD_PASSWORD)",
        flush=True,
    )
    serve(url, store, credentials, sock)
    return 0
