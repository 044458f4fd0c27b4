"""scripts/record-fleet: record real rollouts of the demo shop (A/A and faulty canaries) for the bench.

Each rollout runs on this machine's real fleet (Redis, Celery workers, the demo shop behind
HAProxy), several at a time, with the analysis set never to end it early, so that the recording
holds the whole schedule; then it is exported (replay-format.md) and stored gzip-compressed in
canary/bench/recordings/ with its truth in the description ("fleet: healthy ..." or
"fleet: bad ..."). scripts/bench-judge replays them in their own rows.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

RECORDINGS = Path(__file__).resolve().parent / "recordings"
TRANSACTIONS = ["demo-browse.yaml", "demo-search.yaml", "demo-checkout.yaml"]
BASE_LATENCY_MS = 15.0


def _fault(rng: random.Random) -> tuple[str, dict[str, Any]]:
    """One real fault of the demo shop (canary/demo/faults.py) and its label."""
    kind = rng.choice(["errors", "latency", "growth", "broken"])
    if kind == "errors":
        rate = round(rng.uniform(0.03, 0.08), 3)
        return f"errors {100 * rate:.1f}%", {"latency_ms": BASE_LATENCY_MS, "error_rate": rate}
    if kind == "latency":
        extra = round(rng.uniform(8.0, 30.0), 1)
        return f"latency +{extra:g} ms", {"latency_ms": BASE_LATENCY_MS + extra}
    if kind == "growth":
        per_s = round(rng.uniform(0.1, 0.3), 2)
        return f"latency growing {per_s:g} ms/s", {
            "latency_ms": BASE_LATENCY_MS,
            "latency_growth_ms_per_s": per_s,
        }
    endpoint = rng.choice(["checkout", "search:body", "product"])
    return f"broken endpoint {endpoint}", {
        "latency_ms": BASE_LATENCY_MS,
        "broken_endpoint": endpoint,
    }


def _rollout(
    workdir: Path, name: str, urls: dict[str, str], router: dict[str, Any], interval: float
) -> Path:
    from canary.cli.demo import _transactions_dir

    tx_dir = _transactions_dir()
    doc = {
        "name": name,
        "service": name,
        "stable": {"url": urls["stable"], "version": "1.0.0"},
        "canary": {"url": urls["canary"], "version": "1.1.0"},
        "transactions": [str(tx_dir / t) for t in TRANSACTIONS],
        "schedule": {
            "initial_weight": 10,
            "step_weight": 10,
            "max_weight": 100,
            "step_interval": interval,
        },
        "probes": {"per_step": max(10, int(2 * interval)), "batch_size": 10, "concurrency": 4},
        "slo": {
            "success_threshold": 99.0,
            "max_latency_increase_pct": 10.0,
            "max_error_rate_increase_pp": 0.5,
            "error_budget": 1000,
        },
        # The live analysis must not end the rollout early: the recording is for replays.
        "analysis": {
            "max_holds": 20,
            "engine": {
                "alpha": 1e-200,
                "forecast": False,
                "suspect_fraction": 1.0,
                "on_max_holds": "increase",
            },
        },
        "router": router,
        "notifiers": [{"type": "log"}],
    }
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def record_round(
    workdir: Path, plans: list[tuple[str, str, dict[str, Any]]], interval: float, console: Console
) -> list[tuple[str, str, dict[str, Any]]]:
    """Run one round of rollouts at once; returns (name, description, recording) each."""
    from canary.cli.follow import Followed, follow
    from canary.cli.rollouts import expected_duration, local_fleet, probe_queues, start
    from canary.local import free_port
    from canary.local.demo import start_demo_service
    from canary.local.haproxy import start_haproxy
    from canary.replay import export_recording
    from canary.rollout.config import load_rollout
    from canary.store import Store

    out = []
    # Each round starts its own fleet: the last round's Redis is gone.
    os.environ.pop("CANARY_REDIS_URL", None)
    with contextlib.ExitStack() as stack:
        files = []
        for name, _desc, faults in plans:
            urls = {}
            for version in ("stable", "canary"):
                port = free_port()
                spec = faults if version == "canary" else {"latency_ms": BASE_LATENCY_MS}
                proc = start_demo_service(
                    f"{name}-{version}", port, workdir=workdir, seed=port, **spec
                )
                stack.callback(proc.stop)
                urls[version] = f"http://127.0.0.1:{port}"
            proxy = start_haproxy(workdir, urls["stable"], urls["canary"])
            stack.callback(proxy.stop)
            router = {"type": "haproxy", **proxy.router_options}
            files.append(_rollout(workdir, name, urls, router, interval))
        loaded = [load_rollout(p) for p in files]
        queues = sorted({q for cfg, _ in loaded for q in probe_queues(cfg)})
        url = stack.enter_context(local_fleet(queues, workdir, console)).url
        store = Store.from_url(url)
        followed = [Followed(start(url, cfg, txs), label=cfg.name) for cfg, txs in loaded]
        deadline = time.monotonic() + max(expected_duration(cfg) for cfg, _ in loaded)
        follow(store, followed, console, deadline=deadline)
        for (name, desc, _), f in zip(plans, followed, strict=True):
            rec = export_recording(store, f.rollout_id)
            rec["name"] = name
            rec["description"] = desc
            out.append((name, desc, rec))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="record-fleet", description=__doc__)
    ap.add_argument("--aa", type=int, default=20, help="A/A rollouts (identical versions)")
    ap.add_argument("--faults", type=int, default=20, help="rollouts with a faulty canary")
    ap.add_argument("--at-once", type=int, default=8, help="rollouts run at the same time")
    ap.add_argument("--interval", type=float, default=12.0, help="seconds per step")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--skip", type=int, default=0, help="rounds already recorded (resume)")
    ap.add_argument("--out", type=Path, default=RECORDINGS)
    args = ap.parse_args(argv)
    os.environ.setdefault("CANARY_HOME", "/tmp/analysis-home")
    rng = random.Random(args.seed)
    plans: list[tuple[str, str, dict[str, Any]]] = []
    for i in range(args.aa):
        plans.append((f"fleet-aa-{i:02d}", "fleet: healthy canary (A/A)", {"latency_ms": 15.0}))
    for i in range(args.faults):
        label, faults = _fault(rng)
        plans.append((f"fleet-bad-{i:02d}", f"fleet: bad canary ({label})", faults))
    rng.shuffle(plans)
    console = Console(stderr=True, soft_wrap=True)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="canary-record-") as tmp:
        for k in range(args.skip * args.at_once, len(plans), args.at_once):
            batch = plans[k : k + args.at_once]
            console.print(f"round {k // args.at_once + 1}: {', '.join(p[0] for p in batch)}")
            for name, desc, rec in record_round(Path(tmp), batch, args.interval, console):
                path = args.out / f"{name}.json.gz"
                with gzip.open(path, "wt", encoding="utf-8") as fh:
                    json.dump(rec, fh, separators=(",", ":"))
                console.print(f"  {path.name}: {desc}, {len(rec['observations'])} results")
    return 0


if __name__ == "__main__":
    sys.exit(main())
