"""The demo: two real rollouts, a healthy canary promoted and one that saturates under traffic rolled back."""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from canary.cli.follow import Followed, follow
from canary.cli.rollouts import expected_duration, local_fleet, probe_queues, start
from canary.demo.users import WINDOW_S, Users
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


USERS_RPS = 10.0  # each shop's users, through its router
CAPACITY_RPS = 2.5  # the saturating canary's: a quarter of the users

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
        "name": "shop-saturating",
        "label": "saturating",
        "expect": "rolled_back",
        "stable": {"version": "1.0.0", "faults": {"latency_ms": 15.0}},
        "canary": {
            "version": "1.2.0",
            "faults": {
                "latency_ms": 15.0,
                # Each user request/s over the capacity: +150 ms on every request, +20% errors.
                "extra_args": [
                    "--user-capacity-rps",
                    f"{CAPACITY_RPS:g}",
                    "--overload-ms-per-rps",
                    "150",
                    "--overload-errors-per-rps",
                    "0.2",
                ],
            },
        },
        "story": f"fine at first; saturates beyond {CAPACITY_RPS:g} user requests/s, "
        f"about {100 * CAPACITY_RPS / USERS_RPS:.0f}% of the users",
    },
]
DASHBOARD_PORT = 8090  # when free; another free port otherwise
DASHBOARD_USER = "canary"


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
            # Generous: the demo runs on laptops and busy CI machines; the comparisons with
            # stable are what catch a bad canary here.
            "latency_p95_ms": 2000,
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


class _WeightPick:
    """Without a router, users go to the canary with the rollout's weight as probability."""

    def __init__(self, store: Store, stable: str, canary: str) -> None:
        self.store, self.stable, self.canary = store, stable, canary
        self.rollout_id: str | None = None
        self._weight, self._read_at = 0.0, 0.0

    def __call__(self) -> str:
        now = time.monotonic()
        if self.rollout_id and now - self._read_at > 0.5:
            record = self.store.load_rollout(self.rollout_id) or {}
            self._weight, self._read_at = float(record.get("weight") or 0), now
        return self.canary if random.random() * 100 < self._weight else self.stable


def _fixed(url: str) -> Callable[[], str]:
    return lambda: url


def _dashboard(stack: contextlib.ExitStack, workdir: Path, redis_url: str) -> tuple[str, str]:
    """`canary dashboard` on the demo's fleet; its URL and password (CANARY_DASHBOARD_PASSWORD
    when set, else a new one)."""
    from canary.local import ManagedProcess, free_port

    password = os.environ.get("CANARY_DASHBOARD_PASSWORD") or secrets.token_urlsafe(12)
    port = DASHBOARD_PORT if _port_free(DASHBOARD_PORT) else free_port()
    proc = ManagedProcess(
        "demo-dashboard",
        [sys.executable, "-m", "canary.cli.main", "dashboard", "--port", str(port)],
        log_path=workdir / "dashboard.log",
        env={
            "CANARY_REDIS_URL": redis_url,
            "CANARY_DASHBOARD_USER": DASHBOARD_USER,
            "CANARY_DASHBOARD_PASSWORD": password,
        },
    )
    proc.url = f"http://127.0.0.1:{port}/"
    proc.start()
    stack.callback(proc.stop)
    proc.wait_until(lambda: _answers(proc.url + "healthz"), 30.0, "dashboard /healthz")
    return proc.url, password


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


class _Shares(threading.Thread):
    """Prints each shop's users' share on the canary whenever it moves by 8 points or more."""

    def __init__(self, console: Console, users: dict[str, Users]) -> None:
        super().__init__(name="demo-shares", daemon=True)
        self.console, self.users = console, users
        self.shown = {label: 0.0 for label in users}
        self.peak = {label: 0.0 for label in users}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(1.0):
            self._look(final=False)

    def _look(self, *, final: bool) -> None:
        for label, u in self.users.items():
            share, n = u.canary_share()
            if n < 5:
                continue
            self.peak[label] = max(self.peak[label], share)
            moved = abs(share - self.shown[label]) >= 0.08 or (share == 0 < self.shown[label])
            if moved or (final and share != self.shown[label]):
                back = " (all back on stable)" if share == 0 and self.shown[label] else ""
                self.shown[label] = share
                self.console.print(
                    f"[{label}]   users: {share:.0%} served by the canary, "
                    f"{1 - share:.0%} by stable{back}",
                    style="blue",
                    highlight=False,
                    markup=False,
                )

    def stop(self) -> None:
        """Stop, saying where each shop's users are now."""
        if self.done.is_set():
            return
        self.done.set()
        self.join(timeout=5)
        self._look(final=True)


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
        entries: dict[str, dict[str, str]] = {}
        use_haproxy = haproxy_available()
        if not use_haproxy:
            console.print(
                "HAProxy is not installed, so weights go to the noop router (scripts/install-"
                "proxies installs it); the demo's users then pick the canary with the rollout's "
                "weight as probability, as HAProxy would.",
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
                # Its own folder: each HAProxy needs its own admin socket.
                proxy = start_haproxy(workdir / sc["name"], urls["stable"], urls["canary"])
                stack.callback(proxy.stop)
                router = {"type": "haproxy", **proxy.router_options}
                urls["entry"] = proxy.url
                console.print(
                    f"[{sc['label']}] {USERS_RPS:g} users' requests/s reach the shop through "
                    f"HAProxy at {proxy.url}; the rollout moves its weights",
                    highlight=False,
                    markup=False,
                )
            entries[sc["label"]] = urls
            files.append((sc, _rollout_file(workdir, sc, urls, interval, router)))
        loaded = [(sc, *load_rollout(path)) for sc, path in files]
        queues = sorted({q for _, cfg, _ in loaded for q in probe_queues(cfg)})
        url = stack.enter_context(local_fleet(queues, workdir, console)).url
        store = Store.from_url(url)
        dash_url, password = _dashboard(stack, workdir, url)
        console.print(
            f"\nWatch both rollouts live: {dash_url}  (user {DASHBOARD_USER}, password "
            f"{password})\n",
            style="bold",
            highlight=False,
            markup=False,
        )
        picks: dict[str, _WeightPick] = {}
        users: dict[str, Users] = {}
        for sc, _cfg, _txs in loaded:
            urls = entries[sc["label"]]
            pick: Callable[[], str]
            if "entry" in urls:
                pick = _fixed(urls["entry"])
            else:
                pick = picks[sc["label"]] = _WeightPick(store, urls["stable"], urls["canary"])
            users[sc["label"]] = stack.enter_context(Users(pick, rate=USERS_RPS))
        shares = _Shares(console, users)
        shares.start()
        stack.callback(shares.stop)
        began = time.monotonic()
        followed = []
        for sc, cfg, txs in loaded:
            rid = start(url, cfg, txs)
            if sc["label"] in picks:
                picks[sc["label"]].rollout_id = rid
            followed.append(Followed(rid, label=sc["label"]))
        deadline = time.monotonic() + max(expected_duration(cfg) for _, cfg, _ in loaded)
        finished = follow(store, followed, console, deadline=deadline)
        elapsed = time.monotonic() - began
        # The users' share is counted over the last seconds: let it show where traffic is now.
        time.sleep(WINDOW_S + 1.0)
        shares.stop()
        code = _summary(console, loaded, followed, finished, elapsed, shares.peak)
        _linger(console, dash_url)
    return code


def _linger(console: Console, dash_url: str) -> None:
    """At a terminal, keep the fleet and dashboard up until Enter, so the pages can be read."""
    if not sys.stdin.isatty():
        return
    console.print(
        f"The dashboard stays up at {dash_url} until you press Enter.",
        style="bold",
        highlight=False,
        markup=False,
    )
    with contextlib.suppress(EOFError, KeyboardInterrupt):
        input()


def _summary(
    console: Console,
    loaded: list[Any],
    followed: list[Followed],
    finished: bool,
    elapsed: float,
    peaks: dict[str, float],
) -> int:
    table = Table(title=f"demo summary ({elapsed:.0f} s)", show_lines=False)
    for col in ("rollout", "canary", "outcome", "users on canary", "why"):
        table.add_column(col)
    good = finished
    caught_at = 0
    for (sc, _cfg, _txs), f in zip(loaded, followed, strict=True):
        rec = f.final or {}
        outcome = rec.get("outcome") or "unfinished"
        top = max((int(d.get("weight") or 0) for d in rec.get("decisions") or []), default=0)
        if outcome == "rolled_back":
            caught_at = top
        # The faulty canary must have been caught after traffic moved, not at weight 0.
        ok = outcome == sc["expect"] and (outcome == "promoted" or top > 0)
        good = good and ok
        why = str((rec.get("reasons") or ["-"])[0])
        style = "green" if ok else "red"
        verdict = "as designed" if ok else f"expected {sc['expect'].replace('_', ' ')}"
        end = "100%" if outcome == "promoted" else "0%"
        table.add_row(
            sc["label"],
            escape(f"{sc['canary']['version']}: {sc['story']}"),
            f"[{style}]{outcome.replace('_', ' ')} at {top}%[/] ({verdict})",
            f"peak {peaks.get(sc['label'], 0.0):.0%}, then {end}",
            escape(why if len(why) <= 90 else why[:89] + "…"),
        )
    console.print()
    console.print(table)
    if good:
        console.print(
            "The healthy canary reached 100% and was promoted; the saturating one slowed "
            f"down at {caught_at}% of the traffic and was rolled back: its users are back on "
            "stable.",
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
