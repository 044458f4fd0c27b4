"""compose.yaml and docker/ read as data: every command exists in the package, nothing is exposed.

No Docker engine runs here, so `docker compose config` cannot be used; these checks read the files.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from canary.cli.main import build_parser
from canary.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
DOCKERFILE = (ROOT / "docker" / "Dockerfile").read_text()
CANARY_SERVICES = [n for n, s in SERVICES.items() if s.get("image") == "canary:latest"]


def _command(service: dict[str, Any]) -> list[str]:
    cmd = service["command"]
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def test_the_stack_has_every_service() -> None:
    expected = {
        "redis",
        "coordinator",
        "probe",
        "beat",
        "flower",
        "exporter",
        "gate",
        "dashboard",
        "demo-stable",
        "demo-canary",
        "haproxy",
    }
    assert expected <= set(SERVICES)
    assert set(CANARY_SERVICES) == expected - {"redis", "haproxy"}
    for name in CANARY_SERVICES:
        assert SERVICES[name]["build"]["dockerfile"] == "docker/Dockerfile"


@pytest.mark.parametrize("name", CANARY_SERVICES)
def test_every_command_exists_in_the_package(name: str) -> None:
    argv = _command(SERVICES[name])
    settings = load_settings()
    if argv[0] == "celery":
        assert argv[1] == "-A"
        module, _, attr = argv[2].partition(":")
        app = getattr(importlib.import_module(module), attr)
        assert type(app).__name__ == "Celery"
        sub = argv[3]
        if sub == "worker":
            queues = argv[argv.index("-Q") + 1].split(",")
            known = {settings.control_queue, f"{settings.probe_queue_prefix}.default"}
            assert set(queues) <= known, queues
            # Every replica needs its own node name: %h is the container's hostname.
            assert "%h" in argv[argv.index("-n") + 1]
            app.loader.import_default_modules()  # what a worker does: imports "include"
            tasks = {t for t in app.tasks if t.startswith("canary.")}
            assert {"canary.advance", "canary.analyze", "canary.probe_batch"} <= tasks
        elif sub == "beat":
            # Its schedule file must be writable by the image's non-root user: under /tmp.
            assert argv[argv.index("--schedule") + 1].startswith("/tmp/")
            app.loader.import_default_modules()
            tick = app.conf.beat_schedule["canary-monitor-tick"]
            assert tick["task"] in app.tasks and "canary.monitor_probe" in app.tasks
        else:
            assert sub == "flower"
            importlib.import_module("flower")
    elif argv[:3] == ["python", "-m", "canary.demo"]:
        from canary.demo.__main__ import build_parser as demo_parser

        args = demo_parser().parse_args(argv[3:])
        assert args.host == "0.0.0.0" and args.port == 8080
    else:
        assert argv[0] == "canary", argv
        # The console script's own parser must accept the very arguments compose passes.
        args = build_parser().parse_args(argv[1:])
        assert callable(args.func)


def _published(service: dict[str, Any]) -> list[str]:
    out = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            out.append(
                f"{port.get('host_ip', '')}:{port.get('published', '')}:{port.get('target')}"
            )
        else:
            out.append(str(port))
    return out


def test_nothing_binds_a_public_host_port() -> None:
    for name, service in SERVICES.items():
        for port in _published(service):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"
    assert not _published(SERVICES["redis"])


def test_redis_has_a_required_password_and_persistence() -> None:
    redis = SERVICES["redis"]
    command = " ".join(_command(redis))
    assert "--requirepass" in command and "--appendonly yes" in command
    assert redis["environment"]["REDIS_PASSWORD"].startswith("${REDIS_PASSWORD:?")
    assert any(str(v).endswith(":/data") for v in redis["volumes"])
    assert "redis-data" in COMPOSE["volumes"]
    for name in CANARY_SERVICES:
        url = (SERVICES[name].get("environment") or {}).get("CANARY_REDIS_URL")
        if name.startswith("demo-"):
            assert url is None  # the demo shop needs no Redis, and gets no password
        else:
            assert url is not None and url.startswith("redis://:${REDIS_PASSWORD:?"), name
            assert url.endswith("@redis:6379/0")


def test_flower_requires_basic_auth() -> None:
    env = SERVICES["flower"]["environment"]
    user, _, password = env["FLOWER_BASIC_AUTH"].partition(":${FLOWER_PASSWORD:?")
    assert user and password
    assert "FLOWER_AUTH" not in env  # no OAuth or other auth replacing the password


def test_gate_requires_its_token_and_binds_localhost_only() -> None:
    gate = SERVICES["gate"]
    assert gate["environment"]["CANARY_GATE_TOKEN"].startswith("${CANARY_GATE_TOKEN:?")
    argv = _command(gate)
    assert argv[:2] == ["canary", "gate"] and argv[argv.index("--port") + 1] == "8787"
    # The image ships configs/ under /app: the config dir the gate reads is there.
    config_dir = argv[argv.index("--config-dir") + 1]
    assert config_dir.startswith("/app/configs/") and "COPY configs ./configs" in DOCKERFILE
    assert (ROOT / config_dir.removeprefix("/app/")).is_dir()
    assert _published(gate) == ["127.0.0.1:${GATE_PORT:-8787}:8787"]
    assert "8787" in DOCKERFILE.split("EXPOSE", 1)[1].splitlines()[0]


def test_dashboard_requires_a_password() -> None:
    env = SERVICES["dashboard"]["environment"]
    assert env["CANARY_DASHBOARD_PASSWORD"].startswith("${DASHBOARD_PASSWORD:?")


def test_probe_workers_scale() -> None:
    probe = SERVICES["probe"]
    assert "container_name" not in probe and not probe.get("ports")
    assert "hostname" not in probe


def test_every_service_has_a_healthcheck() -> None:
    for name, service in SERVICES.items():
        assert service.get("healthcheck", {}).get("test"), name


def test_haproxy_config_matches_the_stack() -> None:
    haproxy = SERVICES["haproxy"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in haproxy["volumes"]}
    cfg_path = ROOT / mounts["/usr/local/etc/haproxy/haproxy.cfg"].removeprefix("./")
    cfg = cfg_path.read_text()
    servers = dict(re.findall(r"^\s*server (\w+) ([\w.-]+):\d+", cfg, re.M))
    assert servers == {"stable": "demo-stable", "canary": "demo-canary"}
    assert "weight 0" in cfg.split("server canary")[1].splitlines()[0]
    socket = re.search(r"stats socket (\S+) .*level admin", cfg)
    assert socket is not None
    # The runtime socket lives on the volume the coordinator mounts, owned by the image's user.
    run_dir = str(Path(socket.group(1)).parent)
    assert mounts[run_dir] == "haproxy-run"
    assert f"haproxy-run:{run_dir}" in SERVICES["coordinator"]["volumes"]
    assert "uid 10001" in socket.group(0) and "--uid 10001" in DOCKERFILE
    bind = re.search(r"bind :(\d+)", cfg)
    assert bind and any(p.endswith(f":{bind.group(1)}") for p in _published(haproxy))


def test_dockerfile_builds_a_non_root_image_without_secrets() -> None:
    lines = [ln.strip() for ln in DOCKERFILE.splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    assert "RUN pip install . && rm -rf /src" in lines
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    for ln in lines:
        if ln.startswith(("ENV", "ARG")):
            assert not re.search(r"PASSWORD|SECRET|TOKEN|REDIS_URL", ln, re.I), ln
    copied = [ln.split()[1] for ln in lines if ln.startswith("COPY ")]
    assert all(src in {"pyproject.toml", "canary", "workers", "configs"} for src in copied), copied
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    # Everything is ignored by default; what the image needs is let back in one by one.
    assert "**" in ignore and "**/.env" in ignore


def test_grafana_dashboard_uses_only_exported_metrics() -> None:
    dash = json.loads((ROOT / "docker" / "grafana" / "canary-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\bcanary_[a-z_]+", e)}
    source = (ROOT / "canary" / "exporter.py").read_text()
    families = set(re.findall(r'"(canary_[a-z_]+)"', source))
    exported = families | {f"{f}_total" for f in families} | {f"{f}_bucket" for f in families}
    assert used and used <= exported, used - exported
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])


def test_haproxy_accepts_the_config() -> None:
    import shutil
    import subprocess

    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(binary).is_file():
        pytest.fail("haproxy is missing: run scripts/install-proxies", pytrace=False)
    # The demo hosts resolve only inside compose; init-addr none lets the check pass without them.
    r = subprocess.run(
        [binary, "-c", "-f", str(ROOT / "docker" / "haproxy.cfg")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ALERT" not in r.stderr
