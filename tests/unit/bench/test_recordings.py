"""The recordings of the real fleet in the bench: readable, truthful, small, and judged right."""

from __future__ import annotations

from canary.analysis.settings import EngineSettings
from canary.bench.run import RECORDINGS, load, recorded_files
from canary.replay import replay


def test_there_are_at_least_twenty_of_each_and_they_are_small() -> None:
    files = recorded_files()
    assert len(files["fleet-aa"]) >= 20 and len(files["fleet-bad"]) >= 20
    assert sum(p.stat().st_size for p in RECORDINGS.glob("*")) < 20 * 1024 * 1024


def test_each_parses_and_says_its_truth() -> None:
    for kind, paths in recorded_files().items():
        for i in range(len(paths)):
            rec, truth = load(kind, i)
            assert truth.bad == (kind == "fleet-bad")
            assert rec.description.startswith("fleet: " + ("bad" if truth.bad else "healthy"))
            assert {r.version for r in rec.observations} == {"stable", "canary"}


def test_an_a_a_rollout_is_not_rolled_back_and_a_faulty_one_is() -> None:
    rec, _ = load("fleet-aa", 0)
    assert list(replay(rec, EngineSettings()))[-1]["outcome"] != "rolled_back"
    rec, _ = load("fleet-bad", 0)
    assert list(replay(rec, EngineSettings()))[-1]["outcome"] == "rolled_back"
