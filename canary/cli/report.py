"""The `canary report` subcommand: one self-contained HTML report of a rollout or a recording."""

from __future__ import annotations

import argparse
from pathlib import Path

from canary.cli.helptext import HelpFormatter, epilog


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "report",
        help="write an HTML report (plots, decisions, reasons) of a rollout or a recording",
        description="Write one self-contained HTML file: per-version error rate and latency over "
        "time, the canary weight, forecast bands, every decision with its reasons. SOURCE is a "
        "recording (canary-replay/1 JSON file, whose decisions are what the analysis decides on "
        "replaying it) or a rollout id read from CANARY_REDIS_URL.",
        epilog=epilog(
            [
                "canary report shop-20260101-120000-ab12cd -o shop.html",
                "canary export shop-20260101-120000-ab12cd > rec.json && canary report rec.json",
            ],
            {
                0: "report written",
                1: "no such rollout, or Redis unreachable",
                2: "invalid recording",
            },
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("source", metavar="ROLLOUT_ID|RECORDING.json")
    p.add_argument(
        "-o", "--output", default=None, help="where to write (default: SOURCE-NAME.report.html)"
    )
    p.add_argument(
        "--no-analysis",
        action="store_true",
        help="for a recording: draw the nominal schedule instead of replaying the analysis",
    )
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from canary import report

    source = str(args.source)
    path = Path(source)
    if path.suffix.lower() == ".json" or path.is_file():
        data = report.from_recording(path, analyse=not args.no_analysis)
        default = path.with_suffix(".report.html").name
    elif (kept := _kept_recording(source)) is not None:
        # `canary run` with its own Redis leaves the rollout's files behind when it ends.
        data = report.from_recording(kept, analyse=not args.no_analysis)
        default = f"{source}.report.html"
    else:
        from canary.cli.operate import fleet_store

        data = report.from_store(fleet_store(), source)
        default = f"{source}.report.html"
    out = report.write_report(data, args.output or default)
    print(f"report written to {out}")
    return 0


def _kept_recording(rollout_id: str) -> Path | None:
    """The recording `canary run` kept for ``rollout_id`` under CANARY_HOME/runs, if any."""
    from canary.cli.rollouts import runs_dir

    if "/" in rollout_id or rollout_id.startswith("."):
        return None
    path = runs_dir() / rollout_id / "recording.json"
    return path if path.is_file() else None
