"""`canary monitor add|list|remove`: continuous synthetic monitoring of stable versions."""

from __future__ import annotations

import argparse
import json

from canary.cli.helptext import HelpFormatter, epilog
from canary.errors import ConfigError
from canary.monitor import load_monitor


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "monitor",
        help="probe each service's stable version on a schedule (its history)",
        description="Monitors probe a service's stable version every INTERVAL seconds on the "
        "fleet (celery beat ticks them), so that rollouts compare the canary with stable's own "
        "history as well as with stable probed at the same time.",
        epilog=epilog(
            [
                "canary monitor add monitors/shop.yaml",
                "canary monitor list --json",
                "canary monitor remove shop",
            ],
            {0: "done", 1: "no fleet (Redis unreachable)", 2: "invalid file, or no such monitor"},
        ),
        formatter_class=HelpFormatter,
    )
    ms = p.add_subparsers(dest="monitor_command", metavar="ACTION")
    ms.required = True
    add = ms.add_parser(
        "add",
        help="add or replace a service's monitor from a YAML/JSON file",
        description="Check a monitor file (service, url, transactions, interval, runs) and "
        "its transactions, then store it on the fleet; a service has one monitor.",
        epilog=epilog(
            ["canary monitor add monitors/shop.yaml"],
            {0: "added or replaced", 1: "no fleet", 2: "invalid file (FILE:LINE:COL: ...)"},
        ),
        formatter_class=HelpFormatter,
    )
    add.add_argument("file", help="monitor file: service, url, transactions, interval, runs")
    add.set_defaults(func=cmd_add)
    ls = ms.add_parser(
        "list",
        help="the monitors and how much history each has",
        description="List the fleet's monitors with the stable results kept per transaction.",
        epilog=epilog(
            ["canary monitor list", "canary monitor list --json"], {0: "listed", 1: "no fleet"}
        ),
        formatter_class=HelpFormatter,
    )
    ls.add_argument("--json", action="store_true", help="one JSON document")
    ls.set_defaults(func=cmd_list)
    rm = ms.add_parser(
        "remove",
        help="stop monitoring a service (its history is kept)",
        description="Stop probing a service's stable version; the history already kept stays.",
        epilog=epilog(
            ["canary monitor remove shop"], {0: "removed", 1: "no fleet", 2: "no such monitor"}
        ),
        formatter_class=HelpFormatter,
    )
    rm.add_argument("service")
    rm.set_defaults(func=cmd_remove)


def cmd_add(args: argparse.Namespace) -> int:
    from canary.cli.operate import fleet_store

    record = load_monitor(args.file)
    new = fleet_store().save_monitor(record)
    names = ", ".join(t["transaction_name"] for t in record["transactions"])
    print(
        f"{'added' if new else 'replaced'} monitor {record['service']}: {names} against "
        f"{record['url']} every {record['interval']:g}s ({record['runs']} run(s) each)"
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from canary.cli.operate import fleet_store

    store = fleet_store()
    rows = []
    for m in store.list_monitors():
        names = [t["transaction_name"] for t in m["transactions"]]
        rows.append(
            {
                "service": m["service"],
                "url": m["url"],
                "interval": m["interval"],
                "runs": m["runs"],
                "environment": m["environment"],
                "transactions": names,
                "history": {n: store.history_size(m["service"], n) for n in names},
            }
        )
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print("no monitors (add one with `canary monitor add FILE`)")
        return 0
    for r in rows:
        hist = ", ".join(f"{n} {c}" for n, c in r["history"].items())
        print(
            f"{r['service']}  {r['url']}  every {r['interval']:g}s x{r['runs']}  "
            f"[{r['environment']}]  history: {hist}"
        )
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    from canary.cli.operate import fleet_store

    if not fleet_store().remove_monitor(args.service):
        raise ConfigError(f"no monitor for service {args.service!r}; `canary monitor list`")
    print(f"removed monitor {args.service} (its history is kept)")
    return 0
