"""The demo: two real rollouts on this machine, a healthy canary promoted and a faulty one rolled back."""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from canary.cli.follow import Followed, follow
from canary.cli.rollouts import expected_duration, local_fleet, probe_queues, start
from canary.rollout.config import load_rollout
from canary.store import Store

# Where the demo's synthetic transactions live (seed fields only, as an operator writes them).
TRANSACTIONS = ["demo-browse.yaml", "demo-search.yaml", "demo-checkout.yaml"]


def _transactions_dir() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "configs" / "transactions"
        if (candidate / TRANSACTIONS[0]).exists():
            return candidate
    raise FileNotFoundError(
        "configs/transactions/demo-*.yaml not found; run the demo from a checkout"
    )


SCENARIOS: list[dict[str, Any]] = [
    {
        "name": "shop-healthy",
        "label": "healthy",
        "expect": "promoted",
        "stable": {"version": "1.0.0", "faults": {"latency_ms": 15.0}},
        "canary": {"version": "1.1.0", "faults": {"latency_ms": 15.0}},
        "story": "same behaviour as stable",
    },
    {
        "name": "shop-faulty",
        "label": "faulty",
        "expect": "rolled_back",
        "stable": {"version": "1.0.0", "faults": {"latency_ms": 15.0}},
        "canary": {"version": "1.2.0", "faults": {"latency_ms": 60.0, "error_rate": 0.12}},
        "story": "12% of requests fail, +45 ms latency",
    },
]


def _rollout_file(
    workdir: Path,
    scenario: dict[str, Any],
    urls: dict[str, str],
    interval: float,
    router: dict[str, Any],
) -> Path:
    tx_dir = _transactions_dir()
    doc = {
        "name": scenario["name"],
        "service": scenario["name"],
        "stable": {"url": urls["stable"], "version": scenario["stable"]["version"]},
        "canary": {"url": urls["canary"], "version": scenario["canary"]["version"]},
        "transactions": [str(tx_dir / t) for t in TRANSACTIONS],
        "schedule": {
            "initial_weight": 10,
            "step_weight": 30,
            "max_weight": 100,
            "step_interval": interval,
        },
        "probes": {"per_step": 30, "batch_size": 10, "concurrency": 5},
        "slo": {
            "success_threshold": 95.0,
            "latency_p95_ms": 500,
            "max_latency_increase_pct": 50,
            "max_error_rate_increase_pp": 2.0,
        },
        "analysis": {"min_samples": 10, "max_holds": 2},
        "router": router,
        "notifiers": [{"type": "log"}],
    }
    path = workdir / f"{scenario['name']}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run_demo(*, interval: float = 4.0, workdir: Path | None = None) -> int:
    """Run both scenarios at once; 0 when each ended as designed."""
    from canary.local import free_port
    from canary.local.demo import start_demo_service
    from canary.local.haproxy import haproxy_available, start_haproxy

    console = Console(soft_wrap=True)
    console.print(
        "canary demo: two rollouts of the demo shop, judged by synthetic transactions\n",
        style="bold",
        highlight=False,
    )
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="canary-demo-")))
        workdir.mkdir(parents=True, exist_ok=True)
        files: list[tuple[dict[str, Any], Path]] = []
        use_haproxy = haproxy_available()
        if not use_haproxy:
            console.print(
                "HAProxy is not installed, so weights go to the noop router and no real traffic "
                "moves (scripts/install-proxies installs it); the analysis runs all the same.",
                style="yellow",
                highlight=False,
            )
        for sc in SCENARIOS:
            urls = {}
            for version in ("stable", "canary"):
                port = free_port()
                proc = start_demo_service(
                    f"{sc['name']}-{version}",
                    port,
                    workdir=workdir,
                    version=sc[version]["version"],
                    seed=port,
                    **sc[version]["faults"],
                )
                stack.callback(proc.stop)
                urls[version] = f"http://127.0.0.1:{port}"
            console.print(
                f"[{sc['label']}] stable {sc['stable']['version']} at {urls['stable']}, canary {sc['canary']['version']} at {urls['canary']} ({sc['story']})",
                highlight=False,
                markup=False,
            )
            router: dict[str, Any] = {"type": "noop"}
            if use_haproxy:
                proxy = start_haproxy(workdir, urls["stable"], urls["canary"])
                stack.callback(proxy.stop)
                router = {"type": "haproxy", **proxy.router_options}
                console.print(
                    f"[{sc['label']}] users reach the shop through HAProxy at {proxy.url}; "
                    "the rollout moves its weights",
                    highlight=False,
                    markup=False,
                )
            files.append((sc, _rollout_file(workdir, sc, urls, interval, router)))
        loaded = [(sc, *load_rollout(path)) for sc, path in files]
        queues = sorted({q for _, cfg, _ in loaded for q in probe_queues(cfg)})
        url = stack.enter_context(local_fleet(queues, workdir, console)).url
        store = Store.from_url(url)
        began = time.monotonic()
        followed = []
        for sc, cfg, txs in loaded:
            followed.append(Followed(start(url, cfg, txs), label=sc["label"]))
        deadline = time.monotonic() + max(expected_duration(cfg) for _, cfg, _ in loaded)
        finished = follow(store, followed, console, deadline=deadline)
        elapsed = time.monotonic() - began
    return _summary(console, loaded, followed, finished, elapsed)


def _summary(
    console: Console, loaded: list[Any], followed: list[Followed], finished: bool, elapsed: float
) -> int:
    table = Table(title=f"demo summary ({elapsed:.0f} s)", show_lines=False)
    for col in ("rollout", "canary", "expected", "outcome", "why"):
        table.add_column(col)
    good = finished
    for (sc, _cfg, _txs), f in zip(loaded, followed, strict=True):
        rec = f.final or {}
        outcome = rec.get("outcome") or "unfinished"
        ok = outcome == sc["expect"]
        good = good and ok
        why = (rec.get("reasons") or ["-"])[0]
        style = "green" if ok else "red"
        table.add_row(
            sc["label"],
            escape(f"{sc['canary']['version']} ({sc['story']})"),
            sc["expect"].replace("_", " "),
            f"[{style}]{outcome.replace('_', ' ')}[/]",
            escape(why),
        )
    console.print()
    console.print(table)
    if good:
        console.print(
            "The healthy canary reached 100% and was promoted; the faulty one was rolled back, traffic back on stable.",
            style="bold green",
            highlight=False,
        )
        return 0
    console.print(
        "The demo did not end as designed; see the lines above and the logs.",
        style="bold red",
        highlight=False,
    )
    return 1
