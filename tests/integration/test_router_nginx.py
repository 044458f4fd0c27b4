"""The nginx router against a real NGINX: upstream file rewritten, checked, reloaded."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from canary.errors import ConfigError, RouterError
from canary.local.nginx import NginxInstance
from canary.routers import RouteContext, build_router
from tests.fixtures.proxies import BackendPair, canary_share

pytestmark = pytest.mark.integration

REQUESTS = 400


def _ctx(pair: BackendPair) -> RouteContext:
    return RouteContext("r-ngx", "shop", {"url": pair.stable_url}, {"url": pair.canary_url}, 3)


def _within(observed: int, weight: int, n: int = REQUESTS, sigmas: float = 4.0) -> bool:
    p = weight / 100
    return abs(observed - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("weight", [0, 5, 50, 100])
def test_traffic_through_nginx_follows_the_weight(
    nginx_proxy: NginxInstance, backend_pair: BackendPair, weight: int
) -> None:
    router = build_router("nginx", nginx_proxy.router_options)
    ctx = _ctx(backend_pair)
    router.set_weight(weight, ctx)
    assert router.verify_weight(weight, ctx) is True
    got = canary_share(nginx_proxy.url + "/", REQUESTS)
    print(f"nginx weight {weight}%: {got}/{REQUESTS} to canary")
    assert _within(got, weight), f"{got}/{REQUESTS} reached the canary at {weight}%"


def test_rollback_sends_everything_back_to_stable(
    nginx_proxy: NginxInstance, backend_pair: BackendPair
) -> None:
    # Addresses come from the rollout's URLs when the router block does not name them.
    options = {k: v for k, v in nginx_proxy.router_options.items() if k not in ("stable", "canary")}
    router = build_router("nginx", options)
    ctx = _ctx(backend_pair)
    router.set_weight(50, ctx)
    assert 100 < canary_share(nginx_proxy.url, 400) < 300
    router.rollback(ctx)
    assert router.verify_weight(0, ctx) is True
    assert canary_share(nginx_proxy.url, 200) == 0
    text = Path(nginx_proxy.router_options["upstream_file"]).read_text()
    assert "down" in text and "weight=0" not in text
    router.promote(ctx)
    assert router.verify_weight(100, ctx) is True
    assert canary_share(nginx_proxy.url, 200) == 200


def test_a_rejected_file_is_restored_and_traffic_stays(
    nginx_proxy: NginxInstance, backend_pair: BackendPair
) -> None:
    ctx = _ctx(backend_pair)
    good = build_router("nginx", nginx_proxy.router_options)
    good.set_weight(0, ctx)
    before = Path(nginx_proxy.upstream_file).read_text()
    bad = build_router("nginx", {**nginx_proxy.router_options, "server_params": "bogus=1"})
    with pytest.raises(RouterError, match=r"nginx -t rejects .*bogus"):
        bad.set_weight(50, ctx)
    assert Path(nginx_proxy.upstream_file).read_text() == before
    assert good.verify_weight(0, ctx) is True
    assert canary_share(nginx_proxy.url, 50) == 0


def test_verify_sees_a_hand_edited_file(
    nginx_proxy: NginxInstance, backend_pair: BackendPair
) -> None:
    ctx = _ctx(backend_pair)
    router = build_router("nginx", nginx_proxy.router_options)
    router.set_weight(20, ctx)
    path = Path(nginx_proxy.upstream_file)
    path.write_text(path.read_text().replace("weight=20", "weight=30"))
    assert router.verify_weight(20, ctx) is False


def test_verify_is_false_when_nginx_is_gone(
    nginx_proxy: NginxInstance, backend_pair: BackendPair
) -> None:
    ctx = _ctx(backend_pair)
    router = build_router("nginx", nginx_proxy.router_options)
    router.set_weight(10, ctx)
    nginx_proxy.stop()
    assert router.verify_weight(10, ctx) is False
    with pytest.raises(RouterError):
        router.set_weight(20, ctx)


def test_bad_options_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="upstream name"):
        build_router("nginx", {"upstream_file": str(tmp_path / "u.conf"), "upstream": "a b"})
    with pytest.raises(ConfigError, match="upstream_file"):
        build_router("nginx", {})


def test_reload_without_pid_file_uses_nginx_s_reload(
    nginx_proxy: NginxInstance, backend_pair: BackendPair
) -> None:
    options = {k: v for k, v in nginx_proxy.router_options.items() if k != "pid_file"}
    router = build_router("nginx", options)
    ctx = _ctx(backend_pair)
    router.set_weight(100, ctx)
    assert router.verify_weight(100, ctx) is True
    # "nginx -s reload" returns before the old worker leaves; the new weights follow shortly.
    deadline = time.monotonic() + 5
    while canary_share(nginx_proxy.url, 20) != 20:
        assert time.monotonic() < deadline, "nginx never served the reloaded upstream"
        time.sleep(0.05)
