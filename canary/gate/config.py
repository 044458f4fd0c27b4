"""The gate's own configuration: the transaction files requests may name, and analysis defaults.

A request names transactions by file name only; they are read from the config dir, never from a
path the caller chooses. ``gate.yaml`` in that dir (optional) sets the schedule, probes, SLO,
analysis and notifiers of every analysis the gate starts; traffic is never the gate's to move,
so there is no router to choose.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from canary.documents import load_document, parse_model
from canary.errors import ConfigError, Problem
from canary.rollout.config import AnalysisSpec, NotifierSpec, Probes, Schedule, SLOSpec

GATE_FILE = "gate.yaml"
TRANSACTION_SUFFIXES = (".yaml", ".yml", ".json")


def _default_schedule() -> Schedule:
    # The controller moves the real traffic; these nominal steps only pace the evidence.
    return Schedule(initial_weight=25, step_weight=25, step_interval=30.0)


class GateDefaults(BaseModel):
    """What ``gate.yaml`` may set: everything of a rollout file but versions and router."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schedule: Schedule = Field(default_factory=_default_schedule)
    probes: Probes = Field(default_factory=Probes)
    slo: SLOSpec = Field(default_factory=SLOSpec)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    notifiers: list[NotifierSpec] = Field(default_factory=lambda: [NotifierSpec(type="log")])


class GateConfig:
    """The config dir: defaults from ``gate.yaml`` and the transaction files in it."""

    def __init__(self, directory: Path, defaults: GateDefaults) -> None:
        self.directory = directory
        self.defaults = defaults

    @classmethod
    def load(cls, directory: str | Path) -> GateConfig:
        """Read the dir; a bad ``gate.yaml`` is a ConfigError naming file:line:col and field."""
        path = Path(directory)
        if not path.is_dir():
            raise ConfigError(f"{path}: the gate's config dir does not exist")
        gate_file = path / GATE_FILE
        if not gate_file.is_file():
            return cls(path, GateDefaults())
        doc = load_document(gate_file)
        defaults = parse_model(GateDefaults, doc)
        problems = _check_notifiers(defaults, doc)
        if problems:
            raise ConfigError(problems)
        return cls(path, defaults)

    def known(self) -> list[str]:
        """File names a request may list under ``transactions``."""
        return sorted(
            p.name
            for p in self.directory.iterdir()
            if p.is_file() and p.suffix in TRANSACTION_SUFFIXES and p.name != GATE_FILE
        )

    def transactions(self, names: list[str]) -> list[dict[str, Any]]:
        """Load the named transaction files (plain JSON, as workers get them).

        An unknown name, or one that is not a plain file name in the dir, is a ConfigError that
        lists the known ones; a file that does not validate reports its own problems.
        """
        from canary.transactions import load_transaction

        known = self.known()
        unknown = [n for n in names if n not in known]
        if unknown:
            listed = ", ".join(known) or "none"
            raise ConfigError(
                "\n".join(
                    f"transactions: unknown transaction {n!r}; known: {listed}" for n in unknown
                )
            )
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for name in names:
            tx = load_transaction(self.directory / name)
            if tx.name in seen:
                raise ConfigError(f"transactions: transaction {tx.name!r} is listed twice")
            seen.add(tx.name)
            out.append(tx.model_dump(mode="json"))
        return out


def _check_notifiers(defaults: GateDefaults, doc: Any) -> list[Problem]:
    from canary.notifiers import NOTIFIERS

    return [
        doc.problem(
            ("notifiers", i, "type"),
            f"unknown notifier {n.type!r}; known: {', '.join(sorted(NOTIFIERS))}",
        )
        for i, n in enumerate(defaults.notifiers)
        if n.type not in NOTIFIERS
    ]
