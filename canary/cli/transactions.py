"""The `canary validate`, `canary probe` and `canary schema` subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any
from urllib.parse import urlsplit

from canary.cli.exits import EXIT_FAILURE, EXIT_INVALID, EXIT_OK
from canary.cli.helptext import HelpFormatter, epilog, helped
from canary.documents import load_document
from canary.errors import ConfigError, Problem
from canary.probing import Target, run_transaction
from canary.probing.fastpath import ProbeSession
from canary.transactions import load_transaction, transaction_schema

MAX_COUNT = 100_000
KINDS = ("transaction", "rollout", "monitor", "recording")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = helped(
        sub,
        "validate",
        help="check transaction, rollout, monitor and recording files",
        description="Check files without running anything; print each problem as "
        "FILE:LINE:COL: field: message on stdout, and a summary on stderr. The kind of each "
        "file is recognised from its top-level keys: a rollout (stable, canary; its "
        "transaction files are checked too), a monitor (service, url, transactions), a "
        "recording (format: canary-replay/1) or a transaction (anything else).",
        examples=[
            "canary validate configs/transactions/*.yaml",
            "canary validate configs/rollouts/example.yaml",
            "canary validate --kind monitor monitors/shop.yaml",
        ],
        exits={0: "every file is valid", 2: "at least one problem was printed"},
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument(
        "--kind",
        choices=KINDS,
        default=None,
        help="check every file as this kind instead of recognising it",
    )
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "probe",
        help="run a transaction against a URL, here and now",
        description="Run a transaction COUNT times against URL. Exit 0 when the runs meet the "
        "definition's sla_success_threshold, 1 when they do not, 2 for an invalid file.",
        epilog=epilog(
            [
                "canary probe configs/transactions/demo-checkout.yaml --target http://127.0.0.1:8080",
                "canary probe tx.yaml --target https://canary.example.com --count 20 --json",
            ],
            {
                0: "the runs met sla_success_threshold",
                1: "they did not",
                2: "invalid file or arguments",
            },
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--target", required=True, metavar="URL", help="base URL of the version")
    p.add_argument("--count", type=int, default=1, metavar="N", help="runs (default 1)")
    p.add_argument("--json", action="store_true", help="one JSON object per run, then a summary")
    p.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="K:V",
        help="extra header on every request (repeatable), e.g. for header-routed canaries",
    )
    p.add_argument("--version-label", default="target", help="version recorded in results")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser(
        "schema",
        help="print the JSON Schema of transaction definitions",
        description="Print the JSON Schema (draft 2020-12) of transaction files, for editors.",
        epilog=epilog(["canary schema > transaction.schema.json"], {0: "schema printed"}),
        formatter_class=HelpFormatter,
    )
    p.set_defaults(func=cmd_schema)


def _kind_of(name: str) -> str:
    """What a file is, from its top-level keys; unreadable files go to the transaction loader,
    whose messages for a file it cannot parse are the established ones."""
    try:
        data = load_document(name).data
    except (ConfigError, OSError):
        return "transaction"
    if not isinstance(data, dict):
        return "transaction"
    if str(data.get("format", "")).startswith("canary-replay/"):
        return "recording"
    if "stable" in data and "canary" in data:
        return "rollout"
    if "transaction_name" not in data and {"service", "url", "transactions"} <= set(data):
        return "monitor"
    return "transaction"


def _check(name: str, kind: str) -> None:
    """Load ``name`` as ``kind`` with the loader the running system uses; ConfigError if bad."""
    if kind == "rollout":
        from canary.rollout.config import load_rollout

        load_rollout(name)
    elif kind == "monitor":
        from canary.monitor import load_monitor

        load_monitor(name)
    elif kind == "recording":
        from canary.replay import load_recording

        load_recording(name)
    else:
        load_transaction(name)


def cmd_validate(args: argparse.Namespace) -> int:
    bad = 0
    kinds: dict[str, int] = {}
    for name in args.files:
        kind = args.kind or _kind_of(name)
        kinds[kind] = kinds.get(kind, 0) + 1
        try:
            _check(name, kind)
        except ConfigError as exc:
            bad += 1
            problems = exc.problems or [Problem(name, 1, 1, "", str(exc))]
            for problem in problems:
                print(problem)
        except Exception as exc:  # the contract is a message per problem, never a traceback
            bad += 1
            print(Problem(name, 1, 1, "", f"cannot be checked: {type(exc).__name__}: {exc}"))
    total = len(args.files)
    seen = ", ".join(f"{n} {k}{'s' if n > 1 else ''}" for k, n in sorted(kinds.items()))
    print(f"{total - bad} of {total} file(s) valid ({seen})", file=sys.stderr)
    return EXIT_INVALID if bad else EXIT_OK


def _headers(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition(":")
        if not sep or not key.strip() or any(c in item for c in "\r\n"):
            raise ConfigError(f"--header {item!r}: expected NAME:VALUE")
        out[key.strip()] = value.strip()
    return out


def _check_target(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"--target {url!r}: expected an http(s) URL such as http://127.0.0.1:8080"
        )
    return url


def cmd_probe(args: argparse.Namespace) -> int:
    if not 1 <= args.count <= MAX_COUNT:
        raise ConfigError(f"--count must be between 1 and {MAX_COUNT}")
    target = Target(args.version_label, _check_target(args.target), _headers(args.header))
    tx = load_transaction(args.file)
    ok = 0
    # The workers' session: the same deadlines and connection handling as a rollout's probes.
    with ProbeSession() as session:
        for i in range(1, args.count + 1):
            result = run_transaction(tx, target, session=session)
            ok += result.ok
            if args.json:
                print(json.dumps(result.to_dict()), flush=True)
            else:
                print(_line(i, result.to_dict()), flush=True)
    rate = round(100.0 * ok / args.count, 3)
    met = rate >= tx.sla_success_threshold
    summary: dict[str, Any] = {
        "runs": args.count,
        "ok": ok,
        "success_rate": rate,
        "sla_met": met,
        "sla_success_threshold": tx.sla_success_threshold,
    }
    if args.json:
        print(json.dumps({"summary": summary}), flush=True)
    else:
        verdict = "met" if met else "NOT met"
        print(f"{ok}/{args.count} runs ok ({rate:g}%); SLA {tx.sla_success_threshold:g}% {verdict}")
    return EXIT_OK if met else EXIT_FAILURE


def _line(i: int, r: dict[str, Any]) -> str:
    head = f"run {i}: {'ok  ' if r['ok'] else 'FAIL'} {r['latency_ms']:.0f} ms status {r['status']}"
    return head if r["ok"] else f"{head}\n  {r['error']}"


def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(transaction_schema(), indent=2))
    return EXIT_OK
