"""`canary export ROLLOUT_ID` and `canary replay FILE [--config ANALYSIS.yaml]`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from canary.analysis.engine import EngineSettings
from canary.analysis.slo import SLO
from canary.cli.exits import EXIT_FAILURE, EXIT_INVALID, EXIT_OK
from canary.cli.helptext import HelpFormatter, epilog
from canary.documents import load_document, parse_model
from canary.errors import CanaryError, ConfigError
from canary.replay import SLOModel, load_recording, replay


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScheduleOverride(_Strict):
    initial_weight: int | None = Field(default=None, ge=0, le=100)
    step_weight: int | None = Field(default=None, ge=1, le=100)
    max_weight: int | None = Field(default=None, ge=1, le=100)
    step_interval_s: float | None = Field(default=None, gt=0)


class AnalysisConfig(_Strict):
    """What ``--config`` may change: SLO fields, the schedule, and the engine's settings."""

    slo: SLOModel = Field(default_factory=SLOModel)
    rollout: ScheduleOverride = Field(default_factory=ScheduleOverride)
    analysis: dict[str, Any] = Field(default_factory=dict)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    e = sub.add_parser(
        "export",
        help="write a rollout's recording (canary-replay/1) from Redis",
        description="Write every result of a rollout, and stable's history before it, as one "
        "canary-replay/1 JSON file: replay it, report it, or keep it as a test case.",
        epilog=epilog(
            ["canary export shop-20260101-120000-ab12cd -o shop.json"],
            {0: "written", 1: "Redis unreachable", 2: "unknown rollout id"},
        ),
        formatter_class=HelpFormatter,
    )
    e.add_argument("rollout_id", metavar="ROLLOUT_ID")
    e.add_argument("-o", "--output", help="write to this file instead of stdout")
    e.set_defaults(func=cmd_export)

    r = sub.add_parser(
        "replay",
        help="replay a recording through the analysis; print decisions as JSON Lines",
        description="Feed a recording's results, in time order, through the analysis a live "
        "rollout uses, and print each decision as a JSON line, then the outcome. --config "
        "overrides the SLO, the schedule or the engine's settings: what would it have decided?",
        epilog=epilog(
            ["canary replay shop.json", "canary replay shop.json --config stricter.yaml"],
            {0: "replayed (any outcome)", 2: "invalid recording or config (FILE:LINE:COL: ...)"},
        ),
        formatter_class=HelpFormatter,
    )
    r.add_argument("file", metavar="FILE", help="a canary-replay/1 recording")
    r.add_argument("--config", metavar="ANALYSIS.yaml", help="SLO, schedule or engine overrides")
    r.set_defaults(func=cmd_replay)


def _one_line(exc: Exception) -> str:
    lines = [ln for ln in str(exc).splitlines() if ln.strip()] or ["invalid input"]
    more = f" (and {len(lines) - 1} more problem(s))" if len(lines) > 1 else ""
    return lines[0] + more


def cmd_export(args: argparse.Namespace) -> int:
    from canary.cli.operate import fleet_store
    from canary.replay import export_recording

    try:
        store = fleet_store()
        rec = export_recording(store, args.rollout_id)
    except LookupError as exc:
        print(f"canary export: {exc.args[0]}", file=sys.stderr)
        return EXIT_INVALID
    except CanaryError as exc:
        print(f"canary export: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    text = json.dumps(rec, separators=(",", ":"))
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    else:
        sys.stdout.write(text + "\n")
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    try:
        rec = load_recording(args.file)
        settings = EngineSettings()
        if args.config:
            settings = apply_config(rec, args.config)
    except ConfigError as exc:
        print(f"canary replay: {_one_line(exc)}", file=sys.stderr)
        return EXIT_INVALID
    out = sys.stdout
    for line in replay(rec, settings):
        out.write(json.dumps(line) + "\n")
    out.flush()
    return EXIT_OK


def apply_config(rec: Any, path: str) -> EngineSettings:
    """Apply ``--config`` to a loaded recording in place; return the engine settings."""
    doc = load_document(path)
    if doc.data is None:
        doc.data = {}
    cfg = parse_model(AnalysisConfig, doc)
    try:
        settings = EngineSettings.from_dict(cfg.analysis)
    except ConfigError as exc:
        line, col = doc.where(("analysis",))
        raise ConfigError(f"{path}:{line}:{col}: {_one_line(exc)}") from None
    over = cfg.slo.model_dump(exclude_none=True)
    if over:
        merged = {**rec.slo_raw, **over}
        try:
            rec.slo = SLO.from_dict(merged)
        except ConfigError as exc:
            line, col = doc.where(("slo",))
            raise ConfigError(f"{path}:{line}:{col}: {_one_line(exc)}") from None
        rec.slo_raw = merged
    sched = cfg.rollout.model_dump(exclude_none=True)
    if sched:
        rec.rollout = rec.rollout.model_copy(update=sched)
        if rec.rollout.initial_weight > rec.rollout.max_weight:
            line, col = doc.where(("rollout",))
            raise ConfigError(f"{path}:{line}:{col}: rollout.initial_weight: must be <= max_weight")
    return settings
