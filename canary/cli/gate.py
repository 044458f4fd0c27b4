"""`canary gate`: the HTTP verdict service for Argo Rollouts and Flagger (specs/gate.md)."""

from __future__ import annotations

import argparse
import os
from urllib.parse import urlsplit

from canary.cli.helptext import HelpFormatter, epilog

DEFAULT_PORT = 8787
CONFIG_DIR_ENV = "CANARY_GATE_CONFIG_DIR"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "gate",
        help="serve verdicts to Argo Rollouts and Flagger (needs CANARY_GATE_TOKEN)",
        description="Serve canary's synthetic analysis over HTTP to controllers that move "
        "traffic themselves. Every request needs 'Authorization: Bearer $CANARY_GATE_TOKEN'.",
        epilog=epilog(
            [
                "CANARY_GATE_TOKEN=$(openssl rand -hex 24) canary gate --port 8787",
                "canary gate --host 0.0.0.0 --config-dir /etc/canary/transactions",
            ],
            {0: "stopped by SIGINT or SIGTERM", 2: "no token, or a bad --config-dir/gate.yaml"},
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    p.add_argument(
        "--config-dir",
        default=os.environ.get(CONFIG_DIR_ENV) or "configs/transactions",
        help="transaction files requests may name, and gate.yaml with analysis defaults "
        f"(default ${CONFIG_DIR_ENV}, else configs/transactions)",
    )
    p.add_argument(
        "--hook-wait",
        type=float,
        default=None,
        help="seconds Flagger's pre-rollout hook may wait for the weight-0 check (default 8)",
    )
    p.set_defaults(func=cmd_gate)


def cmd_gate(args: argparse.Namespace) -> int:
    import uvicorn

    from canary.cli.operate import fleet_store, fleet_url
    from canary.errors import CanaryError
    from canary.gate.analyses import Analyses, CeleryStarter
    from canary.gate.app import DEFAULT_HOOK_WAIT_S, build_app
    from canary.gate.auth import token_from_env
    from canary.gate.config import GateConfig
    from canary.probing.redact import Redactor
    from canary.settings import load_settings

    # Refused before anything else: no token, nothing listens (ConfigError → exit 2).
    token = token_from_env()
    gate = GateConfig.load(args.config_dir)
    url = fleet_url()
    password = urlsplit(url).password
    try:
        store = fleet_store(url)
    except CanaryError as exc:
        # Its message names the URL, password and all: not on our stderr.
        raise CanaryError(str(Redactor([password or ""])(str(exc)))) from None
    analyses = Analyses(store, gate, CeleryStarter(url))
    wait = DEFAULT_HOOK_WAIT_S if args.hook_wait is None else max(0.0, args.hook_wait)
    app = build_app(analyses, token, hook_wait_s=wait, secrets=(password,) if password else ())
    print(
        f"canary gate on http://{args.host}:{args.port} (transactions from {gate.directory}: "
        f"{', '.join(gate.known()) or 'none'})",
        flush=True,
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=_uvicorn_level(load_settings().log_level),
        # Flagger and Argo poll every few seconds: one line per poll would drown the rest.
        access_log=False,
    )
    return 0


def _uvicorn_level(level: str) -> str:
    known = ("critical", "error", "warning", "info", "debug")
    lowered = "critical" if level.lower() == "fatal" else level.lower()
    return lowered if lowered in known else "info"
