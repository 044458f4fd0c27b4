"""The `canary` entry point as a real process: closed pipes and a malformed CANARY_REDIS_URL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from canary.local import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CANARY = [sys.executable, "-m", "canary.cli.main"]


def _to_a_closed_pipe(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run canary with stdout on a pipe whose reader is already gone (as `| head` ends up)."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # closed before canary writes a byte: every write fails, no race
    env = {**os.environ, "CANARY_HOME": str(tmp_path)}
    try:
        return subprocess.run(
            [*CANARY, *args], stdout=write_end, stderr=subprocess.PIPE, text=True, env=env,
            timeout=120,
        )  # fmt: skip
    finally:
        os.close(write_end)


@pytest.mark.parametrize(
    "args",
    [
        ["schema"],
        [
            "probe",
            str(ROOT / "configs/transactions/demo-browse.yaml"),
            "--target",
            f"http://127.0.0.1:{free_port()}",
            "--json",
        ],
    ],
    ids=["schema", "probe-json"],
)
def test_a_reader_that_went_away_is_no_traceback(args: list[str], tmp_path: Path) -> None:
    r = _to_a_closed_pipe(args, tmp_path)
    assert "Traceback" not in r.stderr and "BrokenPipeError" not in r.stderr, r.stderr
    assert r.returncode == 141


@pytest.mark.parametrize(
    "url", ["localhost:6379", "redis://127.0.0.1:notaport/0", "http://127.0.0.1:6379/0"]
)
def test_a_malformed_redis_url_is_a_clear_error(url: str, tmp_path: Path) -> None:
    env = {**os.environ, "CANARY_REDIS_URL": url, "CANARY_HOME": str(tmp_path)}
    r = subprocess.run(
        [*CANARY, "rollout", "status"], capture_output=True, text=True, env=env, timeout=120
    )
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("CANARY_REDIS_URL: not a valid Redis URL"), r.stderr
