"""`canary monitor add|list|remove`: continuous synthetic monitoring of stable versions."""

from __future__ import annotations

import argparse
import json

from canary.errors import ConfigError
from canary.monitor import load_monitor


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "monitor", help="probe each service's stable version on a schedule (its history)"
    )
    ms = p.add_subparsers(dest="monitor_command", metavar="ACTION")
    ms.required = True
    add = ms.add_parser("add", help="add or replace a service's monitor from a YAML/JSON file")
    add.add_argument("file", help="monitor file: service, url, transactions, interval, runs")
    add.set_defaults(func=cmd_add)
    ls = ms.add_parser("list", help="the monitors and how much history each has")
    ls.add_argument("--json", action="store_true", help="one JSON document")
    ls.set_defaults(func=cmd_list)
    rm = ms.add_parser("remove", help="stop monitoring a service (its history is kept)")
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
