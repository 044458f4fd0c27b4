"""Test hosts on this machine: network namespaces joined to a bridge by veth pairs, each its own IP.

Each "host" reaches the others and this machine only over its veth, through the bridge's
address (the gateway), as a separate machine on a LAN would. The integration test of several
hosts and the probe part of scripts/bench-scale build their hosts here. Needs root and the
``ip`` command (iproute2); every command is bounded in time, and ``destroy`` removes all of it.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from canary.errors import CanaryError

# Each ip command is quick; a hung one (a wedged netlink) must not hang a test or a bench.
IP_TIMEOUT_S = 10.0
# Bounded: a bench or a test asks for a few hosts, never an unbounded number of namespaces.
MAX_HOSTS = 16


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", *args], capture_output=True, text=True, check=check, timeout=IP_TIMEOUT_S
    )


@dataclass
class HostNet:
    """A bridge on this host plus one namespace per test host, each joined by a veth pair."""

    tag: str
    subnet: int
    namespaces: dict[str, str] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)
    # This machine's ends of the veth pairs: one left out of a half-built host goes in destroy.
    links: list[str] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"cbr{self.tag}"

    @property
    def gateway(self) -> str:
        """This machine's address on the bridge: where the hosts find Redis and the targets."""
        return f"10.231.{self.subnet}.1"

    def create(self, hosts: tuple[str, ...]) -> None:
        """Build the bridge and the hosts; CanaryError naming the command that failed (what was
        built stays until ``destroy``)."""
        if len(hosts) > MAX_HOSTS:
            raise CanaryError(f"at most {MAX_HOSTS} namespace hosts, not {len(hosts)}")
        try:
            self._create(hosts)
        except subprocess.CalledProcessError as exc:
            command = " ".join(str(a) for a in exc.cmd)
            raise CanaryError(
                f"cannot build the hosts: `{command}`: {exc.stderr.strip()}"
            ) from None
        except subprocess.TimeoutExpired as exc:
            raise CanaryError(
                f"cannot build the hosts: `{' '.join(exc.cmd)}` took over {exc.timeout:g} s"
            ) from None

    def _create(self, hosts: tuple[str, ...]) -> None:
        _ip("link", "add", "name", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i, host in enumerate(hosts, start=1):
            ns, outer, inner = f"canary-{self.tag}-{host}", f"cv{self.tag}{i}h", f"cv{self.tag}{i}n"
            _ip("netns", "add", ns)
            self.namespaces[host] = ns
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            self.links.append(outer)
            _ip("link", "set", outer, "master", self.bridge)
            _ip("link", "set", outer, "up")
            _ip("link", "set", inner, "netns", ns)
            address = f"10.231.{self.subnet}.{10 + i}"
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", inner)
            _ip("-n", ns, "link", "set", inner, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            self.addresses[host] = address

    def destroy(self) -> None:
        # Deleting a namespace deletes the veth end inside it, and with it the pair.
        for ns in self.namespaces.values():
            _ip("netns", "del", ns, check=False)
        for link in self.links:
            if _ip("link", "show", link, check=False).returncode == 0:
                _ip("link", "del", link, check=False)
        _ip("link", "del", self.bridge, check=False)

    def run_in(self, host: str, argv: list[str]) -> list[str]:
        """``argv`` as run on ``host``: inside its namespace."""
        return ["ip", "netns", "exec", self.namespaces[host], *argv]


def can_build() -> str | None:
    """Why namespace hosts cannot be built here (no ``ip``, not root), or None when they can."""
    if shutil.which("ip") is None:
        return "network namespaces need the `ip` command: apt-get install iproute2"
    probe = f"canary-probe-{uuid.uuid4().hex[:4]}"
    got = _ip("netns", "add", probe, check=False)
    if got.returncode != 0:
        return (
            f"cannot create a network namespace (`ip netns add`; needs root): {got.stderr.strip()}"
        )
    _ip("netns", "del", probe, check=False)
    return None


@contextmanager
def host_network(hosts: tuple[str, ...]) -> Iterator[HostNet]:
    """Namespace hosts named ``hosts`` on a fresh bridge (10.231.X.0/24, X random per call),
    removed on the way out whatever happened; CanaryError when they cannot be built here."""
    why = can_build()
    if why:
        raise CanaryError(why)
    net = HostNet(tag=uuid.uuid4().hex[:4], subnet=random.randint(2, 250))
    try:
        net.create(hosts)
        yield net
    finally:
        net.destroy()
