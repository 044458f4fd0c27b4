"""scripts/bench-judge: replay synthetic recordings through the engine and two reference judges."""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from canary.analysis.engine import EngineSettings
from canary.analysis.stats import wilson
from canary.bench.alt import generate_alt
from canary.bench.field import generate_field
from canary.bench.reference import kayenta_factory, threshold_factory
from canary.bench.scenarios import BAD, DURATION_S, HEALTHY, KINDS, Truth, generate
from canary.replay import JudgeFactory, Recording, engine_factory, parse_recording, replay

# Recorded rollouts of the real fleet (scripts/record-fleet), replayed in their own rows.
RECORDINGS = Path(__file__).resolve().parent / "recordings"
RECORDED = ("fleet-aa", "fleet-bad")
# The synthetic generators by name: the default, and two independent ones with other noise
# families (canary/bench/alt.py; canary/bench/field.py, a probe fleet in front of a load
# balancer) to tell robustness from fitting to one generator.
NOISES = {"default": generate, "alt": generate_alt, "field": generate_field}


def recorded_files() -> dict[str, list[Path]]:
    """The stored recordings by kind, in name order (fleet-aa-*.json.gz, fleet-bad-*.json.gz)."""
    files = sorted(RECORDINGS.glob("fleet-*.json.gz"))
    return {k: [f for f in files if f.name.startswith(k + "-")] for k in RECORDED}


def load(kind: str, seed: int, noise: str = "default") -> tuple[Recording, Truth]:
    """A synthetic draw with ``noise``, or the ``seed``-th stored recording of a recorded kind."""
    if kind not in RECORDED:
        return NOISES[noise](kind, seed)
    path = recorded_files()[kind][seed]
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        rec = parse_recording(fh.read(), path.name)
    bad = kind == "fleet-bad"
    return rec, Truth(kind, bad, 0.0 if bad else None)


JUDGES: dict[str, JudgeFactory] = {
    "engine": engine_factory,
    "threshold": threshold_factory,
    "kayenta": kayenta_factory,
}


def _overlap(a: float, b: float, lo: float) -> float:
    """Length of [a, b] after ``lo``."""
    return max(0.0, b - max(a, lo))


def outcome(rec: Recording, lines: list[dict[str, Any]], onset: float = 0.0) -> dict[str, Any]:
    """Outcome, rollback time, exposure (integral of weight over time) and predictive flag.

    ``exposure`` integrates the weight from t = 0; ``bad_exposure`` only from ``onset``, when the
    canary became worse than tolerated: the traffic that actually met a bad version.
    """
    last = lines[-1]
    weight, t_prev, exposure, bad = float(rec.rollout.initial_weight), 0.0, 0.0, 0.0
    rollback_t = None
    rollback_weight = None
    predictive = False
    for ln in lines[:-1]:
        exposure += weight * (ln["t"] - t_prev)
        bad += weight * _overlap(t_prev, ln["t"], onset)
        if ln["action"] == "rollback":
            rollback_t = ln["t"]
            rollback_weight = int(weight)  # what the canary carried when it was rolled back
            predictive = ln["predictive"]
        t_prev, weight = ln["t"], float(ln["weight"])
    if rollback_t is None:
        # Missed or promoted: the canary keeps its traffic to the end of the recording.
        end = rec.end_t if rec.end_t is not None else DURATION_S
        exposure += weight * max(0.0, end - t_prev)
        bad += weight * _overlap(t_prev, end, onset)
    holds = sum(1 for ln in lines[:-1] if ln["action"] == "hold")
    final_weight = int(weight) if rollback_t is None else 0
    return {
        "outcome": last["outcome"],
        "end_t": last["t"],
        "rollback_t": rollback_t,
        "rollback_weight": rollback_weight,
        "exposure": exposure / 100.0,  # in "seconds at full traffic"
        "bad_exposure": bad / 100.0,
        "predictive": predictive,
        "holds": holds,
        "final_weight": final_weight,
    }


def run_one(task: tuple[str, int, Sequence[str], dict[str, Any], str]) -> dict[str, Any]:
    kind, seed, judges, overrides, noise = task
    rec, truth = load(kind, seed, noise)
    settings = EngineSettings.from_dict(overrides)
    out: dict[str, Any] = {"kind": kind, "seed": seed, "truth": truth.__dict__, "judges": {}}
    out["noise"] = "recorded" if kind in RECORDED else noise
    for name in judges:
        t = time.perf_counter()
        lines = list(replay(rec, settings, judge=JUDGES[name]))
        res = outcome(rec, lines, truth.onset_t or 0.0)
        res["seconds"] = time.perf_counter() - t
        # The reasons of the rollback; else of the last hold (why a healthy canary was not
        # promoted in time), else of the last decision (what the judge made of a missed bad
        # canary): what --explain shows.
        acts = [ln for ln in lines if "action" in ln]
        last = next((ln for ln in reversed(acts) if ln["action"] in ("rollback", "hold")), None)
        last = last or (acts[-1] if acts else None)
        res["reasons"] = [r[:300] for r in (last or {}).get("reasons", [])[:3]]
        if res["outcome"] == "rolled_back":
            res["first_reason"] = res["reasons"][0][:200] if res["reasons"] else ""
        out["judges"][name] = res
    return out


def _median(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 1) if xs else None


def summarize(runs: list[dict[str, Any]], judges: Sequence[str]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for name in judges:
        good = [r for r in runs if not r["truth"]["bad"]]
        bad = [r for r in runs if r["truth"]["bad"]]
        res = [(r, r["judges"][name]) for r in runs]

        def rolled(j: dict[str, Any]) -> bool:
            return bool(j["outcome"] == "rolled_back")

        delays, exposures, bad_exposures, synthetic = [], [], [], []
        for r, j in res:
            if not r["truth"]["bad"]:
                continue
            exposures.append(j["exposure"])
            if r["kind"] not in RECORDED:
                synthetic.append(j["exposure"])
            bad_exposures.append(j["bad_exposure"])
            onset = r["truth"]["onset_t"] or 0.0
            if rolled(j):
                delays.append(max(0.0, j["rollback_t"] - onset))

        def before_breach(kind: str, res: list[tuple[dict[str, Any], Any]] = res) -> float | None:
            rs = [(r, j) for r, j in res if r["kind"] == kind]
            if not rs:
                return None
            ok = [rolled(j) and j["rollback_t"] < r["truth"]["breach_t"] for r, j in rs]
            return round(sum(ok) / len(ok), 3)

        n_bad, n_good = max(1, len(bad)), max(1, len(good))
        table[name] = {
            "recall_bad": round(sum(rolled(r["judges"][name]) for r in bad) / n_bad, 3),
            "false_rollback_good": round(sum(rolled(r["judges"][name]) for r in good) / n_good, 3),
            "promoted_good": round(
                sum(r["judges"][name]["outcome"] == "promoted" for r in good) / n_good, 3
            ),
            "median_delay_s": _median(delays),
            "median_exposure": _median(exposures),
            # The recorded fleet rows are short (about 3 min) and many: they pull the pooled
            # median down, so the synthetic rows get their own.
            "median_exposure_synthetic": _median(synthetic),
            "median_bad_exposure": _median(bad_exposures),
            "latency_drift_before_breach": before_breach("latency-drift"),
            "near_slo_drift_before_breach": before_breach("latency-drift-near-slo"),
            "error_drift_before_breach": before_breach("error-drift"),
            "saturation_before_breach": before_breach("saturation"),
            "leak_before_breach": before_breach("leak"),
            "predictive_rollbacks": sum(r["judges"][name]["predictive"] for r in runs),
            "median_replay_s": round(
                statistics.median(r["judges"][name]["seconds"] for r in runs), 3
            ),
            "exposure_by_kind": {
                k: _median([r["judges"][name]["exposure"] for r in bad if r["kind"] == k])
                for k in (*BAD, "fleet-bad")
            },
            "by_kind": {
                k: round(
                    sum(rolled(r["judges"][name]) for r in runs if r["kind"] == k)
                    / max(1, sum(1 for r in runs if r["kind"] == k)),
                    2,
                )
                for k in (*KINDS, *RECORDED)
            },
            # Rolled back of drawn, per scenario: the counts behind the rates and their
            # intervals (0 of 30 is an upper bound of 11%, not a guarantee).
            "counts_by_kind": {
                k: [
                    sum(rolled(r["judges"][name]) for r in runs if r["kind"] == k),
                    sum(1 for r in runs if r["kind"] == k),
                ]
                for k in (*KINDS, *RECORDED)
                if any(r["kind"] == k for r in runs)
            },
        }
    _ratios(table)
    return table


def _ratios(table: dict[str, Any]) -> None:
    """Each judge's median exposure on bad canaries over the Kayenta-style judge's (target
    <= 0.25), over all rows and over the synthetic ones."""
    ref = table.get("kayenta")
    for row in table.values():
        for key, src in (
            ("exposure_ratio_kayenta", "median_exposure"),
            ("exposure_ratio_kayenta_synthetic", "median_exposure_synthetic"),
        ):
            v, k = row[src], ref[src] if ref else None
            row[key] = round(v / k, 2) if v is not None and k else None


def explain(runs: list[dict[str, Any]], judge: str) -> list[dict[str, Any]]:
    """Every wrong verdict of ``judge``: healthy canaries rolled back or not promoted, bad ones
    not rolled back, each with its kind, seed, time, weight and the judge's reasons."""
    out = []
    for r in runs:
        j = r["judges"].get(judge)
        if j is None:
            continue
        rolled = j["outcome"] == "rolled_back"
        if r["truth"]["bad"]:
            if rolled:
                continue
            what = "missed"
        elif rolled:
            what = "false rollback"
        elif j["outcome"] != "promoted":
            what = "not promoted"
        else:
            continue
        out.append(
            {
                "what": what,
                "kind": r["kind"],
                "seed": r["seed"],
                "noise": r.get("noise", "default"),
                "t": j["rollback_t"] if rolled else j["end_t"],
                "weight": j["rollback_weight"] if rolled else j["final_weight"],
                "outcome": j["outcome"],
                "predictive": j["predictive"],
                "holds": j["holds"],
                "reasons": j.get("reasons", []),
            }
        )
    return out


def render_explain(items: list[dict[str, Any]], judge: str) -> str:
    out = [f"wrong verdicts of {judge} ({len(items)}), with its first reason:"]
    for e in items:
        when = f"t={e['t']:.0f}s at {e['weight']}%"
        tag = " predictive" if e["predictive"] else ""
        tag += f", {e['holds']} holds" if e.get("holds") else ""
        out.append(f"  {e['what']:15s} {e['kind']} seed {e['seed']}: {when}{tag} ({e['outcome']})")
        out.append(f"      {e['reasons'][0] if e['reasons'] else '(no reason given)'}")
    return "\n".join(out)


ROWS = (
    ("recall_bad", "recall on bad canaries", ">= 0.98"),
    ("false_rollback_good", "false rollbacks on good", "<= 0.02"),
    ("promoted_good", "good canaries promoted", ">= 0.98"),
    ("median_delay_s", "median detection delay (s)", ""),
    ("median_exposure", "median exposure on bad, all rows (s x 100%)", ""),
    ("exposure_ratio_kayenta", "  ratio to kayenta-style, all rows", "<= 0.25"),
    ("median_exposure_synthetic", "  same, synthetic rows only", ""),
    ("exposure_ratio_kayenta_synthetic", "  ratio to kayenta-style, synthetic only", "<= 0.25"),
    ("median_bad_exposure", "  same, counted from the onset", ""),
    ("latency_drift_before_breach", "latency drifts rolled back before breach", ">= 0.90"),
    ("near_slo_drift_before_breach", "  same, objective 20% above p95", ""),
    ("error_drift_before_breach", "error drifts rolled back before breach", ""),
    ("saturation_before_breach", "saturating canaries rolled back before breach", ">= 0.90"),
    ("leak_before_breach", "leaks rolled back before breach", ">= 0.90"),
    ("predictive_rollbacks", "predictive rollbacks (count)", ""),
    ("median_replay_s", "median replay time per recording (s)", ""),
)


def render(table: dict[str, Any], n_good: int, n_bad: int, noise: str = "default") -> str:
    names = list(table)
    out = [
        f"bench-judge: {n_good} healthy and {n_bad} bad recordings "
        f"(synthetic, {noise} noise: 25 min, ~18k results each; recorded: about 3 min each)"
    ]
    out.append(f"{'metric':44s}" + "".join(f"{n:>11s}" for n in names) + "   target")
    for key, label, target in ROWS:
        cells = "".join(f"{_cell(table[n][key]):>11s}" for n in names)
        out.append(f"{label:44s}{cells}   {target}")
    out.append("")
    out.append("rolled back, by scenario (healthy should be 0, bad 1), k/n and 95% interval:")
    first = table[names[0]]["counts_by_kind"]
    for k in (*KINDS, *RECORDED):
        if k not in first:
            continue
        tag = "bad " if k in BAD or k == "fleet-bad" else "good"
        cells = "".join(f"{_interval(*table[n]['counts_by_kind'][k]):>19s}" for n in names)
        out.append(f"  {tag} {k:28s}{cells}")
    for label, group in (
        ("all synthetic healthy", HEALTHY),
        ("all synthetic bad", BAD),
        ("recorded A/A", ("fleet-aa",)),
        ("recorded faults", ("fleet-bad",)),
    ):
        if not any(k in first for k in group):
            continue
        cells = ""
        for n in names:
            ks = [v for k, v in table[n]["counts_by_kind"].items() if k in group]
            cells += f"{_interval(sum(a for a, _ in ks), sum(b for _, b in ks)):>19s}"
        out.append(f"       {label:28s}{cells}")
    out.append("")
    out.append("median exposure on bad canaries, by scenario (s x 100%):")
    for k in (*BAD, "fleet-bad"):
        if table[names[0]]["exposure_by_kind"][k] is None:
            continue
        cells = "".join(f"{_cell(table[n]['exposure_by_kind'][k]):>11s}" for n in names)
        out.append(f"       {k:38s}{cells}")
    return "\n".join(out)


def _interval(k: int, n: int) -> str:
    """ "k/n [lo-hi]": the count and its 95% Wilson interval, in percent."""
    lo, hi = wilson(k, n, 1.96)
    return f"{k}/{n} [{100 * lo:.0f}-{100 * hi:.0f}%]"


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench-judge", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a CI-size run (4 seeds per scenario)")
    ap.add_argument("--seeds", type=int, help="recordings per scenario (default 30, quick 4)")
    ap.add_argument("--seed-offset", type=int, default=0, help="first seed (held-out runs)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument(
        "--noise",
        choices=list(NOISES),
        default="default",
        help="the synthetic generator: default, alt or field (other noise families, other seeds)",
    )
    ap.add_argument(
        "--explain",
        action="store_true",
        help="list every wrong verdict of the engine (kind, seed, time, weight, first reason)",
    )
    ap.add_argument("--kinds", help="comma-separated scenarios (default: all)")
    ap.add_argument("--judges", default=",".join(JUDGES), help="comma-separated judges")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--runs", action="store_true", help="with --json: include every run")
    ap.add_argument(
        "--no-recorded",
        dest="recorded",
        action="store_false",
        help="leave out the recordings of the real fleet (canary/bench/recordings)",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an engine setting for this run (JSON value), e.g. --set alpha=0.05",
    )
    args = ap.parse_args(argv)
    seeds = args.seeds or (4 if args.quick else 30)
    stored = recorded_files()
    default = [*KINDS, *(k for k in RECORDED if stored[k])] if args.recorded else list(KINDS)
    kinds = args.kinds.split(",") if args.kinds else default
    judges = args.judges.split(",")
    known = (*KINDS, *RECORDED)
    for k in kinds:
        if k not in known:
            print(
                f"bench-judge: unknown scenario {k!r}; known: {', '.join(known)}", file=sys.stderr
            )
            return 2
    for j in judges:
        if j not in JUDGES:
            print(f"bench-judge: unknown judge {j!r}; known: {', '.join(JUDGES)}", file=sys.stderr)
            return 2
    overrides = {kv.partition("=")[0]: json.loads(kv.partition("=")[2]) for kv in args.set}
    EngineSettings.from_dict(overrides)
    tasks = [
        (k, s, judges, overrides, args.noise)
        for k in kinds
        if k not in RECORDED
        for s in range(args.seed_offset, args.seed_offset + seeds)
    ]
    # Recordings are replayed all, whatever --seeds: there is one of each.
    tasks += [
        (k, i, judges, overrides, args.noise)
        for k in kinds
        if k in RECORDED
        for i in range(len(stored[k]))
    ]
    started = time.perf_counter()
    if args.jobs > 1:
        with multiprocessing.Pool(args.jobs) as pool:
            runs = pool.map(run_one, tasks, chunksize=1)
    else:
        runs = [run_one(t) for t in tasks]
    table = summarize(runs, judges)
    who = "engine" if "engine" in judges else judges[0]
    wrong = explain(runs, who) if args.explain else []
    n_good = sum(1 for r in runs if not r["truth"]["bad"])
    n_bad = len(runs) - n_good
    if args.json:
        doc: dict[str, Any] = {"n_good": n_good, "n_bad": n_bad, "judges": table}
        doc["noise"] = args.noise
        if args.explain:
            doc["explain"] = wrong
        doc["seconds"] = round(time.perf_counter() - started, 1)
        if args.runs:
            doc["runs"] = runs
        print(json.dumps(doc, indent=2))
    else:
        print(render(table, n_good, n_bad, args.noise))
        if args.explain:
            print()
            print(render_explain(wrong, who))
        print(
            f"\n{len(runs)} recordings x {len(judges)} judges in "
            f"{time.perf_counter() - started:.0f} s"
        )
    return 0


__all__ = ["Truth", "main"]
