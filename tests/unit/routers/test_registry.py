"""The router registry."""

from __future__ import annotations

import pytest

from canary.errors import ConfigError
from canary.routers import ROUTERS, RouteContext, Router, build_router


def test_noop_router_accepts_any_weight_and_cannot_tell() -> None:
    r = build_router("noop")
    assert isinstance(r, Router)
    ctx = RouteContext("r1", "shop", {"url": "http://a"}, {"url": "http://b"})
    r.set_weight(25, ctx)
    assert r.verify_weight(25, ctx) is None


def test_unknown_router_lists_known_ones() -> None:
    with pytest.raises(ConfigError) as exc:
        build_router("traefik")
    assert "unknown router 'traefik'" in str(exc.value)
    for name in ROUTERS:
        assert name in str(exc.value)
