"""The webhook router against a real local HTTP receiver: payloads, retries, secret, verify."""

from __future__ import annotations

import time

import pytest

from canary.errors import ConfigError, RouterError
from canary.routers import RouteContext, build_router
from tests.fixtures.proxies import HttpReceiver, Reply, closed_port_url

pytestmark = pytest.mark.integration

CTX = RouteContext(
    "shop-7",
    "shop",
    {"url": "http://stable", "version": "1.0", "image": "shop:1.0"},
    {"url": "http://canary", "version": "1.1", "image": "shop:1.1"},
    step=2,
)
SECRET = "s3cr3t-token-value"


def test_each_action_posts_its_json(http_receiver: HttpReceiver) -> None:
    router = build_router("webhook", {"url": http_receiver.url + "/route"})
    router.set_weight(20, CTX)
    router.promote(CTX)
    router.rollback(CTX)
    got = [r.json() for r in http_receiver.requests]
    assert [(g["action"], g["weight"], g["stable_weight"]) for g in got] == [
        ("set_weight", 20, 80),
        ("promote", 100, 0),
        ("rollback", 0, 100),
    ]
    first = got[0]
    assert first["rollout_id"] == "shop-7" and first["service"] == "shop" and first["step"] == 2
    assert first["canary"] == {"url": "http://canary", "version": "1.1", "image": "shop:1.1"}
    assert first["stable"]["version"] == "1.0" and first["timestamp"].endswith("+00:00")
    req = http_receiver.requests[0]
    assert (req.method, req.path) == ("POST", "/route")
    assert req.headers["content-type"] == "application/json"
    assert req.headers["idempotency-key"] == "shop-7:2:set_weight:20"


def test_secret_header_comes_from_the_environment(
    http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROUTE_TOKEN", SECRET)
    router = build_router(
        "webhook",
        {"url": http_receiver.url, "secret_env": "ROUTE_TOKEN", "secret_header": "X-Route-Key"},
    )
    router.set_weight(5, CTX)
    assert http_receiver.requests[0].headers["x-route-key"] == SECRET
    monkeypatch.delenv("ROUTE_TOKEN")
    with pytest.raises(ConfigError, match="ROUTE_TOKEN is not set"):
        build_router("webhook", {"url": http_receiver.url, "secret_env": "ROUTE_TOKEN"})


def test_server_errors_are_retried_with_backoff(http_receiver: HttpReceiver) -> None:
    http_receiver.reply(503, 502)
    router = build_router("webhook", {"url": http_receiver.url, "retries": 3, "backoff": 0.1})
    began = time.monotonic()
    router.set_weight(10, CTX)
    assert len(http_receiver.requests) == 3
    assert time.monotonic() - began >= 0.3  # 0.1 then 0.2 s between attempts
    # Retries carry the same idempotency key, so a receiver can apply the change once.
    assert len({r.headers["idempotency-key"] for r in http_receiver.requests}) == 1


def test_giving_up_is_a_router_error_without_the_secret(
    http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROUTE_TOKEN", SECRET)
    http_receiver.default = Reply(500, f"boom {SECRET}".encode())
    router = build_router(
        "webhook",
        {"url": http_receiver.url, "secret_env": "ROUTE_TOKEN", "retries": 1, "backoff": 0},
    )
    with pytest.raises(RouterError) as exc:
        router.set_weight(10, CTX)
    assert "failed after 2 attempts: HTTP 500" in str(exc.value)
    assert SECRET not in str(exc.value)
    assert len(http_receiver.requests) == 2


def test_a_client_error_is_not_retried(http_receiver: HttpReceiver) -> None:
    http_receiver.default = Reply(400, b"unknown service")
    router = build_router("webhook", {"url": http_receiver.url, "retries": 3, "backoff": 0})
    with pytest.raises(RouterError, match="HTTP 400: unknown service"):
        router.rollback(CTX)
    assert len(http_receiver.requests) == 1


def test_unreachable_and_slow_receivers_fail_within_the_timeout(
    http_receiver: HttpReceiver,
) -> None:
    with pytest.raises(RouterError, match="ConnectionRefusedError"):
        build_router("webhook", {"url": closed_port_url(), "retries": 0}).set_weight(1, CTX)
    http_receiver.default = Reply(200, b"ok", delay=2.0)
    router = build_router("webhook", {"url": http_receiver.url, "timeout": 0.3, "retries": 0})
    # Its reply (200) would come after 2 s: an error saying "timed out" is the router giving
    # up at its own timeout, before the receiver answered.
    with pytest.raises(RouterError, match="timed out"):
        router.set_weight(1, CTX)


def test_verify_reads_the_live_weight(http_receiver: HttpReceiver) -> None:
    router = build_router(
        "webhook", {"url": http_receiver.url + "/set", "verify_url": http_receiver.url + "/weight"}
    )
    http_receiver.default = Reply(200, b'{"weight": 25}')
    assert router.verify_weight(25, CTX) is True
    assert router.verify_weight(30, CTX) is False
    assert http_receiver.requests[-1].method == "GET"
    assert http_receiver.requests[-1].path == "/weight"
    http_receiver.default = Reply(200, b"<html>")
    with pytest.raises(RouterError, match="must answer JSON"):
        router.verify_weight(25, CTX)
    without = build_router("webhook", {"url": http_receiver.url})
    assert without.verify_weight(25, CTX) is None
