"""A name server that never answers cannot hold a probe past its timeout.

The probe runs in a network namespace of its own, whose resolv.conf (``ip netns exec`` mounts
/etc/netns/NAME/resolv.conf over /etc/resolv.conf) points at a real UDP server on the
namespace's loopback that reads every query and answers none. libc would wait
timeout x attempts (here 5 s x 2) for it; the probe's deadline is 0.5 s.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CANARY = Path(sys.executable).with_name("canary")
# A ceiling for a busy machine, far below the 10 s libc spends on the silent name server.
CEILING_S = 60.0

SILENT_DNS = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
print("listening", flush=True)
while True:
    s.recvfrom(4096)
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def silent_dns_namespace() -> Iterator[str]:
    """A namespace with only loopback, whose name server swallows every query."""
    ns = f"canary-dns-{uuid.uuid4().hex[:6]}"
    conf = Path("/etc/netns") / ns
    _ip("netns", "add", ns)
    server = None
    try:
        _ip("-n", ns, "link", "set", "lo", "up")
        conf.mkdir(parents=True)
        (conf / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:5 attempts:2\n")
        server = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", SILENT_DNS],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None and server.stdout.readline().strip() == "listening"
        yield ns
    finally:
        if server is not None:
            server.kill()
            server.wait(timeout=30)
        shutil.rmtree(conf, ignore_errors=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def test_a_silent_name_server_fails_the_probe_at_its_deadline(
    silent_dns_namespace: str, tmp_path: Path
) -> None:
    tx = tmp_path / "dns.yaml"
    tx.write_text(
        "transaction_name: dns\n"
        "entrypoint_url: http://shop.silent-dns.test:8080/\n"
        "timeout: 0.5\n"
        "steps:\n"
        "  - {method: GET, url: /, expected_response_code: 200}\n"
    )
    argv = [str(CANARY), "probe", str(tx), "--target", "http://shop.silent-dns.test:8080"]
    probe = subprocess.run(
        ["ip", "netns", "exec", silent_dns_namespace, *argv, "--count", "1"],
        capture_output=True,
        text=True,
        timeout=CEILING_S,
        cwd=ROOT,
    )
    out = probe.stdout + probe.stderr
    assert probe.returncode == 1, out  # a failed run, not a crash
    assert "no DNS answer within 0.5s" in out, out
    assert "Traceback" not in out
