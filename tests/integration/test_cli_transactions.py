"""`canary validate`, `canary probe` and `canary schema` as a user runs them: exit codes and output."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
CANARY = str(Path(sys.executable).with_name("canary"))
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "transactions"
LINE = re.compile(r"^.+:\d+:\d+: .+$")

GOOD = """\
transaction_name: cli
entrypoint_url: https://shop.example.com/
steps:
  - method: POST
    url: /api/cart
    payload: {sku: A1}
    expected_response_code: 201
    response_validation:
      - jsonpath: $.sku
        equals: A1
sla_success_threshold: 50
"""


def canary(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CANARY, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


class _Flaky(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    calls = 0
    fail_every = 0

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._reply(200, b"{}")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        cls = type(self)
        cls.calls += 1
        failing = cls.fail_every and cls.calls % cls.fail_every == 0
        routed = self.headers.get("X-Canary") == "yes"
        self._reply(500 if failing else 201, json.dumps({"sku": "A1", "routed": routed}).encode())


@pytest.fixture
def server() -> Iterator[tuple[str, type[_Flaky]]]:
    handler = type("H", (_Flaky,), {"calls": 0, "fail_every": 0})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", handler
    finally:
        srv.shutdown()
        srv.server_close()


def test_validate_ok_and_problems(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    assert canary("validate", str(good)).returncode == 0
    bad = tmp_path / "bad.json"
    bad.write_text(
        '{"transaction_name": "x", "entrypoint_url": "/",\n "steps": [{"method": "GET", "url": "/", "expect": 1}]}\n'
    )
    proc = canary("validate", str(good), str(bad))
    assert proc.returncode == 2
    lines = proc.stdout.splitlines()
    assert lines == [
        f"{bad}:2:42: steps[0].expect: unknown field 'expect'; known fields: "
        + lines[0].split("known fields: ")[1]
    ]
    assert "Traceback" not in proc.stderr


def test_validate_every_shipped_example() -> None:
    files = sorted(str(p) for p in CONFIGS.glob("*.yaml")) + sorted(
        str(p) for p in CONFIGS.glob("*.json")
    )
    assert files
    proc = canary("validate", *files)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize(
    "content",
    [
        "",
        "\x00\x01",
        "a: [",
        "!!python/object/apply:os.system ['true']",
        "{",
        "[]",
        "steps: 3",
        "- - - -" * 500,
    ],
)
def test_validate_never_tracebacks(tmp_path: Path, content: str) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(content)
    proc = canary("validate", str(path), str(tmp_path / "missing.yaml"), str(tmp_path))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stdout + proc.stderr
    assert all(LINE.match(line) for line in proc.stdout.splitlines()), proc.stdout


def test_probe_json_output_and_exit_codes(tmp_path: Path, server: tuple[str, type[_Flaky]]) -> None:
    url, handler = server
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    proc = canary("probe", str(path), "--target", url, "--count", "4", "--json")
    assert proc.returncode == 0, proc.stderr
    *runs, last = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(runs) == 4
    assert all(
        {"ok", "latency_ms", "status", "error"} <= r.keys() and r["ok"] and r["error"] is None
        for r in runs
    )
    assert last == {
        "summary": {
            "runs": 4,
            "ok": 4,
            "success_rate": 100.0,
            "sla_met": True,
            "sla_success_threshold": 50.0,
        }
    }

    handler.fail_every = 2  # half the runs fail; 50% meets a 50% SLA, 99% would not
    proc = canary("probe", str(path), "--target", url, "--count", "4", "--json")
    *runs, last = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 0 and last["summary"]["success_rate"] == 50.0
    failed = [r for r in runs if not r["ok"]]
    assert failed and failed[0]["status"] == 500 and "step 1 (POST" in failed[0]["error"]
    assert "status 500, expected 201" in failed[0]["error"]
    path.write_text(GOOD.replace("sla_success_threshold: 50", "sla_success_threshold: 99"))
    proc = canary("probe", str(path), "--target", url, "--count", "4")
    assert proc.returncode == 1 and "SLA 99% NOT met" in proc.stdout


def test_probe_header_and_human_output(tmp_path: Path, server: tuple[str, type[_Flaky]]) -> None:
    url, _ = server
    path = tmp_path / "routed.yaml"
    path.write_text(
        GOOD.replace("equals: A1", "equals: A1\n      - jsonpath: $.routed\n        equals: true")
    )
    assert canary("probe", str(path), "--target", url).returncode == 1
    proc = canary("probe", str(path), "--target", url, "--header", "X-Canary: yes")
    assert proc.returncode == 0 and "1/1 runs ok" in proc.stdout


def test_probe_invalid_inputs_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("transaction_name: x\n")
    proc = canary("probe", str(bad), "--target", "http://127.0.0.1:9")
    assert proc.returncode == 2 and f"{bad}:1:1: entrypoint_url: is required" in proc.stderr
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    for extra in (
        ["--target", "ftp://x"],
        ["--target", "http://x", "--count", "0"],
        ["--target", "http://x", "--header", "nocolon"],
    ):
        proc = canary("probe", str(good), *extra)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr


def test_probe_unreachable_target_is_a_failed_run_not_a_crash(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    proc = canary("probe", str(good), "--target", "http://127.0.0.1:9", "--json")
    first = json.loads(proc.stdout.splitlines()[0])
    assert proc.returncode == 1 and not first["ok"] and "connection refused" in first["error"]


def test_schema_is_draft_2020_12_and_validates_examples() -> None:
    import jsonschema

    proc = canary("schema")
    assert proc.returncode == 0
    schema = json.loads(proc.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    import yaml

    validator = jsonschema.Draft202012Validator(schema)
    for path in CONFIGS.glob("*.yaml"):
        errors = list(validator.iter_errors(yaml.safe_load(path.read_text())))
        assert not errors, (path, errors[0].message)
    assert list(
        validator.iter_errors(
            {"transaction_name": "x", "entrypoint_url": "/", "steps": [], "bogus": 1}
        )
    )
