"""Network-namespace test hosts: what is refused before any `ip` command runs."""

from __future__ import annotations

import pytest

from canary.errors import CanaryError
from canary.local import netns


def test_more_hosts_than_the_bound_are_refused_before_anything_is_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran: list[tuple[str, ...]] = []
    monkeypatch.setattr(netns, "_ip", lambda *args, **kw: ran.append(args))
    net = netns.HostNet(tag="t0", subnet=9)
    hosts = tuple(f"h{i}" for i in range(netns.MAX_HOSTS + 1))
    with pytest.raises(CanaryError, match=f"at most {netns.MAX_HOSTS} namespace hosts"):
        net.create(hosts)
    assert ran == [] and net.namespaces == {}


def test_a_host_runs_its_command_inside_its_namespace() -> None:
    net = netns.HostNet(tag="t0", subnet=9, namespaces={"host1": "canary-t0-host1"})
    assert net.run_in("host1", ["python", "-V"]) == [
        *("ip", "netns", "exec", "canary-t0-host1"),
        *("python", "-V"),
    ]
    assert net.gateway == "10.231.9.1" and net.bridge == "cbrt0"
