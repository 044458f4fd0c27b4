"""Helpers every router shares: weight checks and addresses from URLs; the full registry."""

from __future__ import annotations

import pytest

from canary.errors import ConfigError, RouterError
from canary.routers import ROUTERS, build_router
from canary.routers.base import check_weight, host_port


@pytest.mark.parametrize("weight", [0, 1, 50, 100])
def test_valid_weights_pass(weight: int) -> None:
    assert check_weight(weight) == weight


@pytest.mark.parametrize("weight", [-1, 101, 5.5, True, "5", None])
def test_invalid_weights_are_router_errors(weight: object) -> None:
    with pytest.raises(RouterError, match="weight must be an integer from 0 to 100"):
        check_weight(weight)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8001", ("127.0.0.1", 8001)),
        ("http://shop.internal/path", ("shop.internal", 80)),
        ("https://shop.internal", ("shop.internal", 443)),
        ("10.0.0.5:9000", ("10.0.0.5", 9000)),
        ("http://[::1]:8080", ("::1", 8080)),
    ],
)
def test_host_port(url: str, expected: tuple[str, int]) -> None:
    assert host_port(url) == expected


@pytest.mark.parametrize("url", ["ftp://x", "http://", "http://host:99999"])
def test_bad_urls_are_router_errors(url: str) -> None:
    with pytest.raises(RouterError):
        host_port(url)


def test_every_router_is_registered() -> None:
    assert set(ROUTERS) == {"noop", "haproxy", "nginx", "command", "webhook", "kubernetes"}


def test_required_options_missing_is_a_config_error() -> None:
    for kind, message in [("nginx", "upstream_file"), ("webhook", "url")]:
        with pytest.raises(ConfigError, match=message):
            build_router(kind, {})
    with pytest.raises(ConfigError, match="http"):
        build_router("webhook", {"url": "ftp://x"})
