"""Command line of the demo service: ``python -m canary.demo serve --port P --name N [faults]``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from canary.demo.faults import BREAK_MODES, ENDPOINTS, USER_HEADER, BrokenEndpoint, Faults
from canary.demo.server import ShopServer
from canary.demo.shop import Shop


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within [0, 1], got {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def _broken(text: str) -> BrokenEndpoint:
    try:
        return BrokenEndpoint.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m canary.demo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the demo shop until SIGTERM or Ctrl-C")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    serve.add_argument("--name", default="stable", help="reported in X-Canary-Version")
    serve.add_argument("--app-version", default="1.0.0", help="reported by /version")
    serve.add_argument("--error-rate", type=_fraction, default=0.0, metavar="F")
    serve.add_argument("--latency-ms", type=_non_negative, default=0.0, metavar="N")
    serve.add_argument("--latency-growth-ms-per-s", type=_non_negative, default=0.0, metavar="N")
    serve.add_argument(
        "--broken-endpoint",
        type=_broken,
        action="append",
        default=[],
        metavar="NAME[:MODE]",
        help=f"endpoint: {', '.join(ENDPOINTS)}; mode: {' or '.join(BREAK_MODES)} (default 500)",
    )
    serve.add_argument(
        "--user-capacity-rps",
        type=_non_negative,
        default=0.0,
        metavar="N",
        help=f"saturate beyond N user requests per second (those with {USER_HEADER}; 0: never)",
    )
    serve.add_argument(
        "--overload-ms-per-rps",
        type=_non_negative,
        default=40.0,
        metavar="N",
        help="latency added per user request per second over the capacity (default 40)",
    )
    serve.add_argument(
        "--overload-errors-per-rps",
        type=_non_negative,
        default=0.04,
        metavar="F",
        help="error rate added per user request per second over the capacity (default 0.04)",
    )
    serve.add_argument("--seed", type=int, default=None)
    return parser


def _stop_on(server: ShopServer) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever() to return, which runs in this very thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    faults = Faults(
        error_rate=args.error_rate,
        latency_ms=args.latency_ms,
        latency_growth_ms_per_s=args.latency_growth_ms_per_s,
        broken=tuple(args.broken_endpoint),
        seed=args.seed,
        user_capacity_rps=args.user_capacity_rps,
        overload_ms_per_rps=args.overload_ms_per_rps,
        overload_errors_per_rps=args.overload_errors_per_rps,
    )
    try:
        server = ShopServer((args.host, args.port), args.name, args.app_version, faults, Shop())
    except OSError as exc:
        print(f"demo {args.name}: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    _stop_on(server)
    host, port = server.server_address[:2]
    print(
        f"demo {args.name} {args.app_version} listening on http://{host!s}:{port}/ {faults}",
        flush=True,
    )
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    print(f"demo {args.name} stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
