"""Several hosts, really: probe workers in three network namespaces, one rollout probing from all.

The test makes its own network (canary.local.netns): a bridge holding 10.231.X.1/24 (X random
per run) with one veth pair per namespace, so each "host" has its own address and reaches Redis
and the demo services only over its veth. Workers start with the documented `canary worker` command under
`ip netns exec`, each consuming its own environment queue. Batches record where they ran
(host label and the source address the host's kernel picks), which shows every host probed.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from canary.cli.rollouts import start
from canary.errors import CanaryError
from canary.local import ManagedProcess, free_port, start_redis
from canary.local.demo import demo_argv
from canary.local.netns import HostNet, can_build, host_network
from canary.rollout import state as st
from canary.rollout.config import load_rollout
from canary.store import Store
from tests.fixtures.waits import START_CEILING_S

ROOT = Path(__file__).resolve().parents[2]
BROWSE = str(ROOT / "configs" / "transactions" / "demo-browse.yaml")
HOSTS = ("host1", "host2", "host3")


@pytest.fixture()
def testnet() -> Iterator[HostNet]:
    try:
        with host_network(HOSTS) as net:
            yield net
    except CanaryError as exc:
        pytest.fail(str(exc))


def _worker(
    name: str, argv: list[str], env: dict[str, str], log: Path, netns: str | None = None
) -> ManagedProcess:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    proc = ManagedProcess(name, [*prefix, *argv], env=env, log_path=log, cwd=ROOT)
    proc.start()
    return proc


def test_one_rollout_probes_from_three_hosts(testnet: HostNet, tmp_path: Path) -> None:
    procs: list[ManagedProcess] = []
    try:
        redis_proc, local_url = start_redis(tmp_path, bind=(testnet.gateway,))
        procs.append(redis_proc)
        # The same Redis (and password) as seen from the other hosts.
        net_url = local_url.replace("@127.0.0.1:", f"@{testnet.gateway}:")
        urls = {}
        for name in ("stable", "canary"):
            demo_port = free_port()
            argv = demo_argv(name, demo_port, host=testnet.gateway, latency_ms=2)
            demo = ManagedProcess(f"demo-{name}", argv, log_path=tmp_path / f"demo-{name}.log")
            demo.start()
            procs.append(demo)
            demo.wait_for_port(testnet.gateway, demo_port, timeout=START_CEILING_S)
            urls[name] = f"http://{testnet.gateway}:{demo_port}"
        base_env = {"PYTHONUNBUFFERED": "1", "CANARY_VISIBILITY_TIMEOUT": "10"}
        control = _worker(
            "control",
            [sys.executable, "-m", "canary.cli.worker", "--queues", "control", "-c", "4"],
            {**base_env, "CANARY_REDIS_URL": local_url},
            tmp_path / "control.log",
        )
        procs.append(control)
        workers = {}
        for host in HOSTS:
            argv = [sys.executable, "-m", "canary.cli.worker", "--queues", host, "-c", "16"]
            argv += ["--broker", net_url, "--host-label", host]
            workers[host] = _worker(
                f"probe-{host}", argv, base_env, tmp_path / f"{host}.log", testnet.namespaces[host]
            )
            procs.append(workers[host])
        for proc in [control, *workers.values()]:
            proc.wait_for_log(" ready.", timeout=START_CEILING_S)

        doc: dict[str, Any] = {
            "name": "hosts",
            "stable": {"url": urls["stable"]},
            "canary": {"url": urls["canary"]},
            "transactions": [BROWSE],
            "schedule": {"steps": [100], "step_interval": 3},
            "probes": {
                "per_step": 12,
                "batch_size": 2,
                "concurrency": 2,
                "environments": list(HOSTS),
            },
            "slo": {"success_threshold": 90, "max_latency_increase_pct": 300},
            "analysis": {"min_samples": 8},
        }
        path = tmp_path / "rollout.yaml"
        path.write_text(yaml.safe_dump(doc))
        cfg, txs = load_rollout(path)
        rid = start(local_url, cfg, txs)
        store = Store.from_url(local_url)
        deadline = time.monotonic() + 60
        record = store.load_rollout(rid)
        while not (record and st.is_final(record["state"])):
            assert time.monotonic() < deadline, f"rollout did not finish: {record}"
            time.sleep(0.2)
            record = store.load_rollout(rid)
        assert record["state"] == "promoted", record.get("reasons")

        seen: dict[str, set[str]] = {}
        for window in store.windows(rid):
            acc = store.window_accounting(rid, window)
            assert acc["recorded"] == set(acc["expected"]) and not acc["missing"], acc
            assert acc["results"] == sum(acc["expected"].values())
            for meta in acc["meta"].values():
                seen.setdefault(meta["environment"], set()).add(meta["source"])
                # The batch ran on the host its environment's queue belongs to.
                assert meta["host"] == meta["environment"]
        # Every host probed, each from its own namespace's address (the kernel's choice there).
        assert seen == {host: {testnet.addresses[host]} for host in HOSTS}, seen
        for host in HOSTS:
            assert "canary.probe_batch" in workers[host].log_text()
    finally:
        for proc in reversed(procs):
            proc.stop(timeout=5)


def test_a_host_that_cannot_be_built_is_a_clear_error_and_leaves_nothing_behind() -> None:
    if why := can_build():
        pytest.fail(why)
    net = HostNet(tag=uuid.uuid4().hex[:4], subnet=random.randint(2, 250))
    try:
        # The second host's namespace name is not one `ip netns add` accepts.
        with pytest.raises(CanaryError, match=r"cannot build the hosts: `ip netns add canary-"):
            net.create(("host1", "bad/name"))
        assert set(net.namespaces) == {"host1"}
    finally:
        net.destroy()
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"canary-{net.tag}-" not in namespaces
    for link in (net.bridge, *net.links):
        shown = subprocess.run(["ip", "link", "show", link], capture_output=True, text=True)
        assert shown.returncode != 0, shown.stdout
