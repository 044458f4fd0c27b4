"""`canary rollout ...`: start, list, watch and steer rollouts on a running fleet."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from typing import Any

from rich.console import Console

from canary.cli.follow import Followed, describe, follow
from canary.cli.helptext import HelpFormatter, epilog
from canary.cli.rollouts import EXIT_BY_STATE, final_json, start
from canary.cli.status import detail_lines, table_lines
from canary.errors import CanaryError, ConfigError
from canary.rollout import state as st
from canary.rollout.config import load_rollout
from canary.settings import redact_url
from canary.store import Store

COMMANDS = {
    "pause": "hold at the current weight until resumed",
    "resume": "let a paused rollout go on",
    "promote": "send all traffic to the canary now and end the rollout",
    "abort": "send all traffic back to stable now and end the rollout",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "rollout",
        help="start, list, watch and steer rollouts on a fleet (CANARY_REDIS_URL)",
        description="Rollouts on a running fleet: the Redis in CANARY_REDIS_URL, or the one "
        "`canary local up` started. Commands go through Redis, so they work from any host.",
        epilog=epilog(
            [
                "canary rollout start configs/rollouts/example.yaml --watch",
                "canary rollout status",
                "canary rollout abort shop-20260101-120000-ab12cd",
            ],
            {0: "see each ACTION's --help", 1: "no fleet", 2: "invalid input or unknown id"},
        ),
        formatter_class=HelpFormatter,
    )
    rs = p.add_subparsers(dest="rollout_command", metavar="ACTION")
    rs.required = True

    s = rs.add_parser(
        "start",
        help="start a rollout on the fleet and print its id",
        description="Check a rollout file and its transactions, send it to the fleet's "
        "coordinator and print the new rollout's id (it goes on without this command).",
        epilog=epilog(
            [
                "canary rollout start configs/rollouts/example.yaml",
                "canary rollout start shop.yaml --watch   # exit code as `watch`",
            ],
            {
                0: "started (with --watch: promoted)",
                1: "no fleet, or (with --watch) it failed",
                2: "invalid file (FILE:LINE:COL: ...)",
                3: "with --watch: rolled back",
            },
        ),
        formatter_class=HelpFormatter,
    )
    s.add_argument("file", help="rollout file (YAML or JSON)")
    s.add_argument(
        "--watch", action="store_true", help="follow it to the end (exit code as `watch`)"
    )
    s.add_argument("--json", action="store_true", help='print {"id": ...} as JSON')
    s.add_argument(
        "--replace",
        action="store_true",
        help="abort the service's running rollout first (without it a second one is refused)",
    )
    s.set_defaults(func=cmd_start)

    t = rs.add_parser(
        "status",
        help="a table of rollouts, or one rollout in detail",
        description="Without ID, the newest rollouts: state, step, canary version, and under "
        "each how it ended or what it last decided. With ID, one rollout: versions, the step "
        "in words (step 3 of 7 (weight 10%, next 30%)), the schedule, the last decisions.",
        epilog=epilog(
            [
                "canary rollout status",
                "canary rollout status shop-20260101-120000-ab12cd",
                "canary rollout status --json | jq .state",
            ],
            {0: "printed", 1: "no fleet", 2: "unknown rollout id"},
        ),
        formatter_class=HelpFormatter,
    )
    t.add_argument("id", nargs="?", help="rollout id (default: list the newest)")
    t.add_argument("--limit", type=int, default=20, help="rollouts listed (default 20)")
    t.add_argument("--json", action="store_true", help="JSON: one line per rollout, or the record")
    t.set_defaults(func=cmd_status)

    w = rs.add_parser(
        "watch",
        help="follow a rollout live; exit 0 promoted, 3 rolled back, 1 failed",
        description="Print a rollout's steps, traffic shifts and decisions as they happen, "
        "until it ends; a finished rollout's story is printed at once. Stopping the watch does "
        "not stop the rollout.",
        epilog=epilog(
            [
                "canary rollout watch shop-20260101-120000-ab12cd",
                "canary rollout watch ID --json | tail -1",
            ],
            {
                0: "promoted",
                1: "failed, no fleet, or gave up after --timeout",
                2: "unknown rollout id",
                3: "rolled back (or aborted)",
            },
        ),
        formatter_class=HelpFormatter,
    )
    w.add_argument("id", help="rollout id (`canary rollout status` lists them)")
    w.add_argument(
        "--json", action="store_true", help="print the final record as JSON on the last line"
    )
    w.add_argument(
        "--timeout", type=float, default=24 * 3600.0, help="give up after this many seconds"
    )
    w.set_defaults(func=cmd_watch)

    r = rs.add_parser(
        "retry",
        help="start an aborted, rolled-back or failed rollout again, same configuration",
        description="Start an ended rollout that was not promoted again, with the same "
        "configuration and transactions; the new rollout records which one it retries.",
        epilog=epilog(
            ["canary rollout retry shop-20260101-120000-ab12cd --json"],
            {
                0: "started (prints the new id)",
                1: "not retriable, or its service is busy",
                2: "unknown id",
            },
        ),
        formatter_class=HelpFormatter,
    )
    r.add_argument("id")
    r.add_argument("--json", action="store_true", help='print {"id": ...} as JSON')
    r.set_defaults(func=cmd_retry)

    for name, text in COMMANDS.items():
        c = rs.add_parser(
            name,
            help=text,
            description=f"{text[0].upper()}{text[1:]}. The command is queued in Redis and the "
            "coordinator applies it at its next check, within seconds (the dashboard's buttons "
            "do the same).",
            epilog=epilog(
                [f"canary rollout {name} shop-20260101-120000-ab12cd"],
                {0: "queued", 1: "the rollout already ended, or no fleet", 2: "unknown id"},
            ),
            formatter_class=HelpFormatter,
        )
        c.add_argument("id", help="rollout id (`canary rollout status` lists them)")
        c.set_defaults(func=cmd_command, command=name)


def fleet_url() -> str:
    """The fleet's Redis: CANARY_REDIS_URL, else the one `canary local up` started."""
    from canary.local.state import fleet_redis_url

    url = fleet_redis_url()
    if not url:
        raise CanaryError("no fleet: set CANARY_REDIS_URL, or start one with `canary local up`")
    return url


def fleet_store(url: str | None = None) -> Store:
    """A store on the fleet's Redis, checked to answer (CanaryError, not a traceback, if not)."""
    url = url or fleet_url()
    store = Store.from_url(url)
    try:
        store.r.ping()
    except Exception as exc:
        raise CanaryError(f"cannot reach Redis at {redact_url(url)}: {exc}") from None
    return store


def _record(store: Store, rollout_id: str) -> dict[str, Any]:
    record = store.load_rollout(rollout_id)
    if record is None:
        raise ConfigError(f"unknown rollout {rollout_id!r}; `canary rollout status` lists them")
    return record


def cmd_start(args: argparse.Namespace) -> int:
    config, transactions = load_rollout(args.file)
    url = fleet_url()
    store = fleet_store(url)
    running = _running_rollout(store, config.service_name)
    if running is not None and not args.replace:
        raise ConfigError(
            f"{args.file}: service {config.service_name!r} already has rollout {running['id']} "
            f"{running['state']} at weight {running.get('weight', 0)}%; wait for it, abort it "
            "(`canary rollout abort`), or start with --replace"
        )
    rollout_id = start(url, config, transactions, replace=args.replace)
    if args.json:
        print(json.dumps({"id": rollout_id}))
    else:
        print(rollout_id, flush=True)
    if args.watch:
        if not _await_record(store, rollout_id, CREATED_WITHIN_S):
            print(
                f"rollout {rollout_id} was sent, but no control worker created it within "
                f"{CREATED_WITHIN_S:.0f} s; is one running? (`canary rollout status` shows it later)",
                file=sys.stderr,
            )
            return 1
        return _watch(store, rollout_id, as_json=False, timeout=24 * 3600.0)
    return 0


def _running_rollout(store: Store, service: str) -> dict[str, Any] | None:
    """The unfinished rollout steering ``service``, if any (the fleet refuses a second one)."""
    holder = store.service_holder(service)
    running = store.load_rollout(holder) if holder else None
    return running if running is not None and not st.is_final(running["state"]) else None


# How long `start --watch` waits for the control worker to create the rollout it was sent.
CREATED_WITHIN_S = 60.0


def _await_record(store: Store, rollout_id: str, timeout: float) -> bool:
    """Wait until the rollout's record exists: the start task is asynchronous."""
    deadline = time.monotonic() + timeout
    while store.load_rollout(rollout_id) is None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def cmd_status(args: argparse.Namespace) -> int:
    store = fleet_store()
    if args.id:
        record = _record(store, args.id)
        if args.json:
            print(json.dumps(record))
            return 0
        _print_one(record)
        return 0
    records = store.list_rollouts(limit=args.limit)
    if args.json:
        keep = (
            "id",
            "name",
            "service",
            "state",
            "outcome",
            "step",
            "weight",
            "created_at",
            "updated_at",
        )
        for r in records:
            print(json.dumps({k: r.get(k) for k in keep}))
        return 0
    for line in table_lines(records, _width()):
        print(line)
    return 0


def _width() -> int:
    """The terminal's width, 80 when it cannot tell (a pipe), never more than 160."""
    return min(shutil.get_terminal_size((80, 24)).columns, 160)


def _print_one(record: dict[str, Any]) -> None:
    for line in detail_lines(record, _width()):
        print(line)


def _watch(store: Store, rollout_id: str, *, as_json: bool, timeout: float) -> int:
    record = _record(store, rollout_id)
    console = Console(stderr=as_json, soft_wrap=True)
    followed = Followed(rollout_id, label="")
    if st.is_final(record["state"]):
        followed.final = record
        for _eid, ev in store.read_events(rollout_id):
            for text, style in describe(followed, ev["type"], ev["data"]):
                console.print(text, style=style, highlight=False, markup=False)
    elif not follow(store, [followed], console, deadline=time.monotonic() + timeout):
        console.print(
            f"gave up watching after {timeout:.0f} s; the rollout goes on",
            style="yellow",
            highlight=False,
        )
        return 1
    final = followed.final or {}
    if as_json:
        print(final_json(final), flush=True)
    return EXIT_BY_STATE.get(str(final.get("state")), 1)


def cmd_watch(args: argparse.Namespace) -> int:
    return _watch(fleet_store(), args.id, as_json=args.json, timeout=args.timeout)


def cmd_retry(args: argparse.Namespace) -> int:
    """Start an ended (not promoted) rollout again with its configuration; links the two."""
    from canary.rollout.record import RolloutRecord

    url = fleet_url()
    store = fleet_store(url)
    old = RolloutRecord.from_dict(_record(store, args.id))
    if not old.final or old.state == "promoted":
        print(
            f"rollout {args.id} is {old.state}: only an aborted, rolled-back or failed one can be"
            " retried",
            file=sys.stderr,
        )
        return 1
    running = _running_rollout(store, old.service)
    if running is not None:
        raise ConfigError(
            f"service {old.service!r} already has rollout {running['id']} {running['state']};"
            " abort it first"
        )
    rollout_id = start(url, old.config, old.transactions, retry_of=old.id)
    print(json.dumps({"id": rollout_id, "retry_of": old.id}) if args.json else rollout_id)
    return 0


def cmd_command(args: argparse.Namespace) -> int:
    """Send the command task; the control worker applies it at once and answers (or says why not)."""
    from canary.cli.commands import send_command

    url = fleet_url()
    store = fleet_store(url)
    _record(store, args.id)  # an unknown id exits 2, as status does
    sent = send_command(url, store, args.id, args.command)
    if sent.status != 200:
        print(sent.message, file=sys.stderr)
        return 1
    print(sent.message)
    return 0
