"""HAProxy router pieces that need no HAProxy: socket addresses, 'show servers state', options."""

from __future__ import annotations

import socket

import pytest

from canary.errors import ConfigError, RouterError
from canary.routers import build_router
from canary.routers.haproxy import parse_servers_state, parse_socket_address

STATE = """1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change
3 app 1 stable 127.0.0.1 2 0 95 100 1
3 app 2 canary 127.0.0.1 2 8 5 0 1
4 other 1 stable 10.0.0.1 2 0 1 1 1

"""


@pytest.mark.parametrize(
    ("address", "family", "target"),
    [
        ("/run/haproxy/admin.sock", socket.AF_UNIX, "/run/haproxy/admin.sock"),
        ("unix:/tmp/a.sock", socket.AF_UNIX, "/tmp/a.sock"),
        ("unix:///tmp/a.sock", socket.AF_UNIX, "/tmp/a.sock"),
        ("127.0.0.1:9999", socket.AF_INET, ("127.0.0.1", 9999)),
        ("tcp://lb.internal:9999", socket.AF_INET, ("lb.internal", 9999)),
        ("[::1]:9999", socket.AF_INET6, ("::1", 9999)),
    ],
)
def test_socket_addresses(address: str, family: socket.AddressFamily, target: object) -> None:
    assert parse_socket_address(address) == (family, target)


@pytest.mark.parametrize("address", ["admin.sock", "host:", ":80", "host:http"])
def test_bad_socket_addresses_are_config_errors(address: str) -> None:
    with pytest.raises(ConfigError, match="neither a unix socket path nor host:port"):
        parse_socket_address(address)


def test_show_servers_state_is_read_by_column_name() -> None:
    servers = parse_servers_state(STATE, "app")
    assert set(servers) == {"stable", "canary"}
    assert (servers["stable"].weight, servers["stable"].ready) == (95, True)
    assert (servers["canary"].weight, servers["canary"].ready) == (5, False)
    assert parse_servers_state(STATE, "other")["stable"].weight == 1
    assert parse_servers_state(STATE, "missing") == {}


def test_a_garbled_state_line_is_a_router_error() -> None:
    garbled = STATE.replace("3 app 2 canary 127.0.0.1 2 8 5", "3 app 2 canary 127.0.0.1 2 x y")
    with pytest.raises(RouterError, match="cannot read"):
        parse_servers_state(garbled, "app")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"zero_state": "off"}, "zero_state: input should be 'ready', 'drain' or 'maint'"),
        ({"stable_server": "a", "canary_server": "a"}, "must differ"),
        ({"timeout": 0}, "timeout: input should be greater than 0"),
        ({"sock": "/x"}, "sock: unknown field 'sock'; did you mean 'socket'"),
        ({"socket": "nowhere"}, "socket: 'nowhere' is neither a unix socket path nor host:port"),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_router("haproxy", options)
