"""The haproxy router against a real HAProxy: weights set and read over the Runtime API."""

from __future__ import annotations

import math
import socket
import threading
from collections.abc import Iterator

import pytest

from canary.errors import RouterError
from canary.local.haproxy import HAProxyInstance
from canary.routers import RouteContext, build_router
from canary.routers.haproxy import RuntimeAPI
from tests.fixtures.proxies import BackendPair, canary_share

pytestmark = pytest.mark.integration

REQUESTS = 400
CTX = RouteContext("r-hap", "shop", {"url": "http://stable"}, {"url": "http://canary"})


def _within(observed: int, weight: int, n: int = REQUESTS, sigmas: float = 4.0) -> bool:
    p = weight / 100
    return abs(observed - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("weight", [0, 5, 50, 100])
def test_traffic_through_haproxy_follows_the_weight(
    haproxy_proxy: HAProxyInstance, weight: int
) -> None:
    router = build_router("haproxy", haproxy_proxy.router_options)
    router.set_weight(weight, CTX)
    assert router.verify_weight(weight, CTX) is True
    got = canary_share(haproxy_proxy.url + "/", REQUESTS)
    print(f"haproxy weight {weight}%: {got}/{REQUESTS} to canary")
    assert _within(got, weight), f"{got}/{REQUESTS} reached the canary at {weight}%"


def test_rollback_sends_everything_back_to_stable_and_promote_to_canary(
    haproxy_proxy: HAProxyInstance,
) -> None:
    router = build_router("haproxy", {**haproxy_proxy.router_options, "zero_state": "drain"})
    router.set_weight(50, CTX)
    assert 100 < canary_share(haproxy_proxy.url, 400) < 300
    router.rollback(CTX)
    assert router.verify_weight(0, CTX) is True
    assert canary_share(haproxy_proxy.url, 200) == 0
    # Out of drain again: the canary server is made ready before it gets traffic.
    router.promote(CTX)
    assert router.verify_weight(100, CTX) is True
    assert canary_share(haproxy_proxy.url, 200) == 200


def test_verify_sees_a_weight_changed_behind_its_back(haproxy_proxy: HAProxyInstance) -> None:
    router = build_router("haproxy", haproxy_proxy.router_options)
    router.set_weight(25, CTX)
    RuntimeAPI(haproxy_proxy.socket).command("set weight app/canary 40")
    assert router.verify_weight(25, CTX) is False
    RuntimeAPI(haproxy_proxy.socket).command("set weight app/canary 25")
    RuntimeAPI(haproxy_proxy.socket).command("set server app/canary state maint")
    assert router.verify_weight(25, CTX) is False


def test_unknown_backend_or_server_is_a_clear_router_error(haproxy_proxy: HAProxyInstance) -> None:
    wrong_backend = build_router("haproxy", {**haproxy_proxy.router_options, "backend": "shop"})
    with pytest.raises(RouterError, match="No such backend"):
        wrong_backend.set_weight(10, CTX)
    with pytest.raises(RouterError, match="no backend 'shop'"):
        wrong_backend.verify_weight(10, CTX)
    wrong_server = build_router(
        "haproxy", {**haproxy_proxy.router_options, "canary_server": "green"}
    )
    with pytest.raises(RouterError, match="No such server"):
        wrong_server.set_weight(10, CTX)
    with pytest.raises(RouterError, match="no server 'green'"):
        wrong_server.verify_weight(10, CTX)


def test_a_missing_socket_is_a_router_error(tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("nosock") / "admin.sock"
    router = build_router("haproxy", {"socket": str(path)})
    with pytest.raises(RouterError, match="unreachable"):
        router.set_weight(10, CTX)


@pytest.fixture()
def silent_listener() -> Iterator[str]:
    """A TCP socket that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()


def test_a_socket_that_never_answers_times_out(
    silent_listener: str, backend_pair: BackendPair
) -> None:
    router = build_router("haproxy", {"socket": silent_listener, "timeout": 0.3})
    # The listener never answers: only the router's own timeout can end the call like this.
    with pytest.raises(RouterError, match=r"no reply .* within 0\.3 s"):
        router.set_weight(10, CTX)
