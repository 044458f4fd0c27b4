"""`canary gate` over real HTTP, with requests shaped as Argo Rollouts and Flagger send them.

Real Redis, real Celery workers as processes, real demo services, the gate as a `canary gate`
process, and Flagger's calls through a real NGINX rendered from the sidecar template that
configs/kubernetes ships. The bodies come from the shipped AnalysisTemplate and Canary, so a
change to either that the gate does not understand fails here.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from jsonpath_ng import parse as jsonpath
from prometheus_client import generate_latest

from canary import report
from canary.exporter import build_registry
from canary.local import LocalFleet, start_redis
from canary.local.demo import start_demo_service
from canary.local.nginx import nginx_binary
from canary.local.procs import ManagedProcess, free_port
from canary.store import Store
from tests.fixtures.waits import CEILING_S, START_CEILING_S

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "configs" / "kubernetes"
CANARY = [sys.executable, "-m", "canary.cli.main"]
TOKEN = "gate-test-token-" + "0123456789abcdef"
# Nominal steps 0 → 50 → 100, two seconds each: a healthy canary passes in about ten seconds.
GATE_YAML = {
    "schedule": {"initial_weight": 50, "step_weight": 50, "step_interval": "2s"},
    "probes": {"per_step": 12, "batch_size": 6, "concurrency": 4},
    "slo": {
        "success_threshold": 90,
        "max_latency_increase_pct": 200,
        "max_error_rate_increase_pp": 5,
    },
    "analysis": {"max_holds": 1, "min_samples": 10},
}
# Generous: CI may be busy. The verdict itself needs a few steps of two seconds.
VERDICT_CEILING_S = 120.0
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _kind(path: Path, kind: str) -> dict[str, Any]:
    return next(d for d in _docs(path) if d["kind"] == kind)


@dataclass
class Stack:
    gate_url: str
    flagger_url: str  # the NGINX that adds the token, as the gate pod's sidecar does
    redis_url: str
    stable: str
    good: str
    bad: str
    gate: ManagedProcess


def _config_dir(tmp: Path) -> Path:
    """The gate's config dir from the shipped ConfigMap (gate.yaml made fast for the test)."""
    configmap = next(
        d
        for d in _docs(K8S / "fleet" / "gate.yaml")
        if d["metadata"]["name"] == "canary-gate-config"
    )
    out = tmp / "gate-config"
    out.mkdir()
    for name, text in configmap["data"].items():
        (out / name).write_text(text)
    (out / "gate.yaml").write_text(yaml.safe_dump(GATE_YAML))
    return out


def _nginx(tmp: Path, gate_port: int) -> ManagedProcess:
    """The Flagger sidecar: the shipped template, rendered as the NGINX image would."""
    binary = nginx_binary()
    assert binary, "nginx is not installed (scripts/install-proxies installs it)"
    configmap = next(
        d
        for d in _docs(K8S / "fleet" / "gate.yaml")
        if d["metadata"]["name"] == "canary-gate-flagger-proxy"
    )
    port = free_port()
    server = (
        configmap["data"]["flagger.conf.template"]
        .replace("${CANARY_GATE_TOKEN}", TOKEN)
        .replace("listen 8788;", f"listen 127.0.0.1:{port};")
        .replace("127.0.0.1:8787", f"127.0.0.1:{gate_port}")
    )
    prefix = tmp / "nginx"
    for sub in TEMP_DIRS:
        (prefix / "tmp" / sub).mkdir(parents=True)
    conf = prefix / "nginx.conf"
    temp = "\n".join(f"    {k}_temp_path {prefix}/tmp/{k};" for k in TEMP_DIRS)
    conf.write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"worker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log notice;\n"
        + "events { worker_connections 64; }\n"
        + f"http {{\n    access_log off;\n{temp}\n{server}\n}}\n"
    )
    base = [binary, "-e", str(prefix / "error.log"), "-p", str(prefix), "-c", str(conf)]
    check = subprocess.run([*base, "-t", "-q"], capture_output=True, text=True, timeout=CEILING_S)
    assert check.returncode == 0, check.stdout + check.stderr
    proc = ManagedProcess(
        "flagger-proxy", [*base, "-g", "daemon off;"], log_path=prefix / "out.log"
    )
    proc.url = f"http://127.0.0.1:{port}"
    proc.start()
    proc.wait_for_port("127.0.0.1", port, timeout=START_CEILING_S)
    return proc


@pytest.fixture(scope="module")
def stack(
    redis_server: str, nginx_installed: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("gate")
    started: list[ManagedProcess] = []
    fleet = LocalFleet(tmp / "fleet", redis_url=redis_server, log_level="WARNING")
    fleet.start()
    try:
        demos = {}
        for name, faults in (("stable", {}), ("good", {}), ("bad", {"error_rate": 0.6})):
            proc = start_demo_service(
                f"gate-{name}", free_port(), workdir=tmp, latency_ms=5, **faults
            )
            started.append(proc)
            demos[name] = proc.url.rstrip("/")
        port = free_port()
        gate = ManagedProcess(
            "gate",
            [*CANARY, "gate", "--port", str(port), "--config-dir", str(_config_dir(tmp))],
            env={
                "CANARY_REDIS_URL": redis_server,
                "CANARY_GATE_TOKEN": TOKEN,
                "PYTHONUNBUFFERED": "1",
            },
            log_path=tmp / "gate.log",
        )
        started.append(gate.start())
        gate.wait_for_port("127.0.0.1", port, timeout=START_CEILING_S)
        proxy = _nginx(tmp, port)
        started.append(proxy)
        yield Stack(
            f"http://127.0.0.1:{port}",
            proxy.url,
            redis_server,
            demos["stable"],
            demos["good"],
            demos["bad"],
            gate,
        )
        assert TOKEN not in gate.log_text() and redis_server not in gate.log_text()
    finally:
        for proc in reversed(started):
            proc.stop(timeout=5)
        fleet.stop()


# --- Argo Rollouts: the web provider of the shipped AnalysisTemplate ---------------------------


def _render(value: Any, args: dict[str, str]) -> Any:
    """Argo's ``{{ args.NAME }}`` substitution, on strings inside any structure."""
    if isinstance(value, str):
        return re.sub(r"\{\{\s*args\.([\w-]+)\s*\}\}", lambda m: args[m.group(1)], value)
    if isinstance(value, dict):
        return {k: _render(v, args) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, args) for v in value]
    return value


class ArgoMeasurement:
    """One AnalysisRun metric as Argo Rollouts measures it with the ``web`` provider."""

    def __init__(self, stack: Stack, canary_url: str, canary_hash: str) -> None:
        template = _kind(K8S / "argo" / "analysis-template.yaml", "AnalysisTemplate")
        self.metric = template["spec"]["metrics"][0]
        args = {a["name"]: a.get("value") for a in template["spec"]["args"]}
        # What the Rollout passes, and the Secret the gate-token arg is read from.
        args.update(
            {
                "service": "shop",
                "stable-url": stack.stable,
                "canary-url": canary_url,
                "canary-hash": canary_hash,
                "gate-url": stack.gate_url,
                "gate-token": TOKEN,
            }
        )
        missing = [k for k, v in args.items() if v is None]
        assert not missing, f"the template needs args the Rollout does not give: {missing}"
        self.web = _render(self.metric["provider"]["web"], args)

    def _send(self) -> requests.Response:
        """The provider's request: its method, headers, JSON body and timeout."""
        web = self.web
        return requests.request(
            web["method"],
            web["url"],
            headers={h["key"]: h["value"] for h in web["headers"]},
            data=json.dumps(web["jsonBody"]),
            timeout=web["timeoutSeconds"],
        )

    def measure(self) -> tuple[int, Any]:
        """(status, result): the jsonPath applied to the answer, as successCondition sees it."""
        resp = self._send()
        if resp.status_code != 200:
            return resp.status_code, resp.json()
        path = self.web["jsonPath"].removeprefix("{").removesuffix("}")
        found = [m.value for m in jsonpath(path).find(resp.json())]
        return 200, found[0] if found else None

    def answer(self) -> dict[str, Any]:
        """The whole answer to the same request, beyond what the jsonPath picks."""
        return dict(self._send().json())

    def phase(self, result: Any) -> str:
        """Successful, Failed or Inconclusive, from the template's own conditions."""

        def holds(condition: str) -> bool:
            m = re.fullmatch(r'result == "(\w+)"', condition.strip())
            assert m, f"condition {condition!r} is not of the form the test understands"
            return bool(result == m.group(1))

        if holds(self.metric["successCondition"]):
            return "Successful"
        if holds(self.metric["failureCondition"]):
            return "Failed"
        return "Inconclusive"


def _until(what: str, probe: Callable[[], Any], done: Callable[[Any], bool]) -> list[Any]:
    """Call ``probe`` until ``done`` says so; every answer seen, in order."""
    seen: list[Any] = []
    deadline = time.monotonic() + VERDICT_CEILING_S
    while time.monotonic() < deadline:
        seen.append(probe())
        if done(seen[-1]):
            return seen
        time.sleep(0.5)  # a polling caller's interval, as Argo's and Flagger's
    raise AssertionError(f"{what}: still not done after {VERDICT_CEILING_S:.0f} s: {seen[-3:]}")


def test_argo_good_canary_passes(stack: Stack) -> None:
    argo = ArgoMeasurement(stack, stack.good, "6d4f8b9c7")
    seen = _until("good canary", argo.measure, lambda r: r[1] != "running")
    assert seen[-1] == (200, "pass")
    assert argo.phase("pass") == "Successful" and argo.phase("running") == "Inconclusive"
    # A pass stays a pass at later polls (Argo may measure again).
    assert argo.measure() == (200, "pass")
    answer = argo.answer()
    assert answer["name"] == "shop-6d4f8b9c7" and answer["reasons"]
    assert answer["metrics"]["state"] == "promoted" and answer["metrics"]["canary_n"] > 0
    # Same Redis, same records: the exporter and the report show the gate's analysis.
    store = Store.from_url(stack.redis_url)
    metrics = generate_latest(build_registry(store)).decode()
    assert f'rollout="{answer["rollout_id"]}"' in metrics
    data = report.from_store(store, answer["rollout_id"])
    assert data.observations and data.decisions


def test_argo_bad_canary_fails_as_a_rollout_would_roll_back(stack: Stack) -> None:
    argo = ArgoMeasurement(stack, stack.bad, "5c8d7f6b4")
    seen = _until("bad canary", argo.measure, lambda r: r[1] != "running")
    assert seen[-1] == (200, "fail") and argo.phase("fail") == "Failed"
    answer = argo.answer()
    assert answer["verdict"] == "fail"
    assert any("succeeded in" in r or "success" in r for r in answer["reasons"]), answer["reasons"]
    # Where a rollout of this canary rolls back: at the isolated check, before any traffic.
    assert answer["metrics"]["step"] == 1 and answer["metrics"]["state"] == "rolled_back"
    # The analysis is a rollout of the fleet like any other: `canary rollout status` shows it.
    out = subprocess.run(
        [*CANARY, "rollout", "status", answer["rollout_id"], "--json"],
        env={**os.environ, "CANARY_REDIS_URL": stack.redis_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert record["state"] == "rolled_back" and record["config"]["router"]["type"] == "noop"


# --- Flagger: webhooks of the shipped Canary, through the token-adding sidecar ----------------


class FlaggerHooks:
    """Flagger's webhook calls: POST, only a JSON Content-Type, the hook's own timeout."""

    def __init__(self, stack: Stack, canary_url: str, checksum: str) -> None:
        canary = _kind(K8S / "flagger" / "canary.yaml", "Canary")
        self.hooks = {w["type"]: w for w in canary["spec"]["analysis"]["webhooks"]}
        self.stack = stack
        self.body = {
            "name": canary["metadata"]["name"],
            "namespace": canary["metadata"]["namespace"],
            "phase": "Progressing",
            "checksum": checksum,
        }
        self.canary_url = canary_url

    def call(self, hook: str) -> tuple[int, dict[str, Any]]:
        webhook = self.hooks[hook]
        metadata = {
            **webhook["metadata"],
            "stable_url": self.stack.stable,
            "canary_url": self.canary_url,
        }
        path = webhook["url"].split(":8788", 1)[1]
        timeout = float(webhook["timeout"].removesuffix("s"))
        resp = requests.post(
            self.stack.flagger_url + path,
            data=json.dumps({**self.body, "metadata": metadata}),
            # What Go's client sends for Flagger: its Content-Type and nothing of ours.
            headers={
                "Content-Type": "application/json",
                "User-Agent": "Go-http-client/1.1",
                "Accept-Encoding": "gzip",
            },
            timeout=timeout,
        )
        return resp.status_code, resp.json()


def test_flagger_good_canary_is_confirmed(stack: Stack) -> None:
    flagger = FlaggerHooks(stack, stack.good, "7b5d9f")
    assert flagger.call("rollback")[0] == 404  # nothing started yet: no rollback
    statuses = _until("pre-rollout", lambda: flagger.call("pre-rollout"), lambda r: r[0] != 425)
    assert statuses[-1][0] == 200, statuses[-1]
    assert statuses[-1][1]["isolated_check"] == "passed"
    assert flagger.call("rollout")[0] == 200
    confirmed = _until(
        "confirm-promotion", lambda: flagger.call("confirm-promotion"), lambda r: r[0] != 425
    )
    assert confirmed[-1][0] == 200 and confirmed[-1][1]["verdict"] == "pass"
    assert flagger.call("rollback")[0] == 404


def test_flagger_bad_canary_fails_the_checks_and_asks_for_rollback(stack: Stack) -> None:
    flagger = FlaggerHooks(stack, stack.bad, "3e1a2c")
    seen = _until("pre-rollout", lambda: flagger.call("pre-rollout"), lambda r: r[0] != 425)
    status, body = seen[-1]
    assert status == 403 and body["verdict"] == "fail" and body["reasons"]
    assert flagger.call("rollout")[0] == 403
    assert flagger.call("confirm-promotion")[0] == 403
    assert flagger.call("rollback")[0] == 200
    # A new revision (another checksum) is another analysis.
    assert FlaggerHooks(stack, stack.bad, "9f9f9f").call("rollback")[0] == 404


# --- authentication and bad input ---------------------------------------------------------------


def test_nothing_is_answered_without_the_token(stack: Stack) -> None:
    body = {
        "name": "x",
        "stable_url": stack.stable,
        "canary_url": stack.good,
        "transactions": ["shop-browse.yaml"],
    }
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": TOKEN},
    ):
        for path in ("/v1/verdicts", "/v1/flagger/rollout", "/", "/metrics"):
            resp = requests.post(stack.gate_url + path, json=body, headers=headers, timeout=10)
            assert resp.status_code == 401, (path, headers)
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    # Flagger's direct calls, without the sidecar, are refused too.
    resp = requests.post(
        stack.gate_url + "/v1/flagger/rollback",
        data=json.dumps({"name": "a", "namespace": "b", "checksum": "c", "metadata": {}}),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert resp.status_code == 401
    # The sidecar adds the token for Flagger's paths only.
    assert (
        requests.post(stack.flagger_url + "/v1/verdicts", json=body, timeout=10).status_code == 404
    )


def test_bad_requests_are_400_with_the_problems(stack: Stack) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}

    def post(path: str, body: Any) -> tuple[int, dict[str, Any]]:
        resp = requests.post(
            stack.gate_url + path,
            data=body if isinstance(body, str) else json.dumps(body),
            headers=auth,
            timeout=10,
        )
        return resp.status_code, resp.json()

    status, body = post("/v1/verdicts", "{not json")
    assert status == 400 and "not JSON" in body["problems"][0]
    status, body = post(
        "/v1/verdicts",
        {
            "name": "x",
            "stable_url": "ftp://a",
            "canary_url": stack.good,
            "transactions": ["shop-browse.yaml"],
            "router": {"type": "command"},
        },
    )
    assert status == 400 and any(p.startswith("router") for p in body["problems"]), body
    status, body = post(
        "/v1/verdicts",
        {
            "name": "x",
            "stable_url": stack.stable,
            "canary_url": stack.good,
            "transactions": ["nope.yaml", "../gate.yaml"],
        },
    )
    assert status == 400 and len(body["problems"]) == 2  # one per unknown name
    assert "unknown transaction 'nope.yaml'" in body["problems"][0]
    assert "shop-browse.yaml" in body["problems"][0]
    status, body = post(
        "/v1/verdicts",
        {
            "name": "x",
            "stable_url": "not a url",
            "canary_url": stack.good,
            "transactions": ["shop-browse.yaml"],
        },
    )
    assert status == 400 and "http(s) URL" in " ".join(body["problems"])
    status, body = post(
        "/v1/flagger/rollout",
        {"name": "a", "namespace": "b", "checksum": "c", "metadata": {"stable_url": stack.stable}},
    )
    assert status == 400 and body["problems"][0].startswith("metadata.canary_url: is required")
    assert post("/v1/flagger/promote", {})[0] == 404


def test_the_gate_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CANARY_GATE_TOKEN"}
    out = subprocess.run(
        [*CANARY, "gate", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "CANARY_GATE_TOKEN is not set" in out.stderr
    assert "Traceback" not in out.stderr
    bad = tmp_path / "cfg"
    bad.mkdir()
    (bad / "gate.yaml").write_text("schedule:\n  step_intervall: 2s\n")
    out = subprocess.run(
        [*CANARY, "gate", "--config-dir", str(bad), "--port", str(free_port())],
        env={**env, "CANARY_GATE_TOKEN": TOKEN, "CANARY_REDIS_URL": "redis://127.0.0.1:1/0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert f"{bad / 'gate.yaml'}:2:3: schedule.step_intervall: unknown field" in out.stderr
    assert "did you mean 'step_interval'" in out.stderr
    # Redis away at start: a one-line failure that does not print the password.
    out = subprocess.run(
        [*CANARY, "gate", "--config-dir", str(_config_dir(tmp_path)), "--port", str(free_port())],
        env={
            **env,
            "CANARY_GATE_TOKEN": TOKEN,
            "CANARY_REDIS_URL": "redis://:s3cret-pw@127.0.0.1:1/0",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and "cannot reach Redis" in out.stderr
    assert "s3cret-pw" not in out.stderr and "Traceback" not in out.stderr


def test_redis_away_is_a_503_not_a_crash_nor_a_pass(tmp_path: Path) -> None:
    redis_proc, url = start_redis(tmp_path)
    port = free_port()
    gate = ManagedProcess(
        "gate-lonely",
        [*CANARY, "gate", "--port", str(port), "--config-dir", str(_config_dir(tmp_path))],
        env={"CANARY_REDIS_URL": url, "CANARY_GATE_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"},
        log_path=tmp_path / "gate.log",
    )
    body = {
        "name": "lonely",
        "stable_url": "http://127.0.0.1:9",
        "canary_url": "http://127.0.0.1:9",
        "transactions": ["shop-browse.yaml"],
    }
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with gate:
        gate.wait_for_port("127.0.0.1", port, timeout=START_CEILING_S)
        first = requests.post(
            f"http://127.0.0.1:{port}/v1/verdicts", json=body, headers=auth, timeout=10
        )
        assert first.status_code == 200 and first.json()["verdict"] == "running"
        redis_proc.stop(timeout=5)
        resp = requests.post(
            f"http://127.0.0.1:{port}/v1/verdicts", json=body, headers=auth, timeout=30
        )
        assert resp.status_code == 503 and "unreachable" in resp.json()["error"]
        metadata = {
            "stable_url": body["stable_url"],
            "canary_url": body["canary_url"],
            "transactions": "shop-browse.yaml",
        }
        flagger = {"name": "a", "namespace": "b", "checksum": "c", "metadata": metadata}
        resp = requests.post(
            f"http://127.0.0.1:{port}/v1/flagger/rollback", json=flagger, headers=auth, timeout=30
        )
        assert resp.status_code == 503  # not a 2xx: Flagger does not roll back on our outage...
        assert gate.alive  # ...and the gate itself goes on
        assert "Traceback" not in gate.log_text()
        # SIGTERM (Kubernetes stopping the pod) ends it cleanly.
        os.killpg(gate.pid or 0, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while gate.alive and time.monotonic() < deadline:
            time.sleep(0.05)
        # uvicorn shuts down, then re-raises the signal so that its exit says what stopped it.
        assert gate.returncode in (0, -signal.SIGTERM), gate.log_tail()
        assert "Finished server process" in gate.log_text()
