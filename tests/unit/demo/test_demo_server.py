"""Unit tests of the demo shop's HTTP layer, served in-process on a free port."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import requests

from canary.demo.faults import BrokenEndpoint, Faults
from canary.demo.server import ShopServer
from canary.demo.shop import Shop


def _serve(faults: Faults) -> Iterator[str]:
    server = ShopServer(("127.0.0.1", 0), "unit", "9.9.9", faults, Shop())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture()
def base() -> Iterator[str]:
    yield from _serve(Faults())


def test_every_endpoint_answers_with_the_version_header(base: str) -> None:
    s = requests.Session()
    home = s.get(base + "/")
    assert home.status_code == 200
    assert "text/html" in home.headers["Content-Type"]
    assert s.get(base + "/", headers={"Accept": "application/json"}).json()["version"] == "9.9.9"
    assert s.get(base + "/healthz").json()["status"] == "ok"
    assert s.get(base + "/version").json() == {"name": "unit", "version": "9.9.9"}
    assert s.get(base + "/api/products").json()["count"] == 6
    assert s.get(base + "/api/products/A1").json()["sku"] == "A1"
    assert s.get(base + "/api/products/nope").status_code == 404
    assert s.get(base + "/api/search", params={"q": "mug"}).json()["count"] == 2
    assert s.get(base + "/api/search").status_code == 400
    cart = s.post(base + "/api/cart", json={"sku": "A2", "qty": 1})
    assert cart.status_code == 201
    assert cart.headers["Location"] == f"/api/cart/{cart.json()['id']}"
    assert s.get(base + f"/api/cart/{cart.json()['id']}").json()["total"] == 24.0
    order = s.post(base + "/api/checkout", json={"cart_id": cart.json()["id"]})
    assert order.status_code == 200
    assert order.json()["status"] == "confirmed"
    assert s.post(base + "/api/feedback", data={"rating": "4"}).status_code == 202
    assert s.get(base + "/nowhere").status_code == 404
    assert s.delete(base + "/api/cart").status_code == 405
    responses = [home, cart, order, s.get(base + "/nowhere"), s.head(base + "/api/products")]
    assert all(r.headers["X-Canary-Version"] == "unit" for r in responses)


def test_bearer_authentication(base: str) -> None:
    s = requests.Session()
    denied = s.get(base + "/api/account")
    assert denied.status_code == 401
    assert denied.headers["WWW-Authenticate"].startswith("Bearer")
    assert s.post(base + "/api/login", json={"user": "demo", "password": "x"}).status_code == 401
    token = s.post(base + "/api/login", json={"user": "demo", "password": "demo-password"})
    auth = {"Authorization": f"Bearer {token.json()['token']}"}
    s.post(base + "/api/checkout", json={"items": [{"sku": "A1", "qty": 1}]}, headers=auth)
    account = s.get(base + "/api/account", headers=auth).json()
    assert account["user"] == "demo"
    assert account["order_count"] == 1
    assert (
        s.get(base + "/api/account", headers={"Authorization": "Bearer bogus"}).status_code == 401
    )


def test_bad_bodies_are_client_errors(base: str) -> None:
    s = requests.Session()
    bad_json = s.post(
        base + "/api/cart", data=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert bad_json.status_code == 400
    assert "not valid JSON" in bad_json.json()["error"]
    assert s.post(base + "/api/checkout", json={}).status_code == 422


def test_echo_reports_what_was_sent(base: str) -> None:
    echo = requests.post(
        base + "/api/echo", data="<a>1</a>", headers={"Content-Type": "application/xml"}
    ).json()
    assert echo["content_type"] == "application/xml"
    assert echo["body"] == "<a>1</a>"


def test_broken_endpoints_and_unfaulted_health() -> None:
    faults = Faults(
        error_rate=1.0,
        broken=(BrokenEndpoint("checkout", "body"),),
    )
    for base in _serve(faults):
        assert requests.get(base + "/healthz").status_code == 200
        assert requests.get(base + "/version").status_code == 200
        assert requests.get(base + "/api/products").status_code == 500
    for base in _serve(Faults(broken=(BrokenEndpoint("checkout", "body"),))):
        wrong = requests.post(base + "/api/checkout", json={"items": [{"sku": "A1"}]})
        assert wrong.status_code == 200
        assert wrong.json()["status"] != "confirmed"
        assert requests.get(base + "/api/products").status_code == 200
