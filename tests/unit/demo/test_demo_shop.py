"""Unit tests of the demo shop's domain rules."""

from __future__ import annotations

import pytest

from canary.demo import shop as shop_module
from canary.demo.shop import Shop, ShopError


def test_cart_checkout_and_account() -> None:
    shop = Shop()
    cart = shop.add_to_cart({"sku": "A1", "qty": 2})
    assert cart["items"] == [{"sku": "A1", "qty": 2}]
    assert cart["total"] == 25.0
    cart = shop.add_to_cart({"cart_id": cart["id"], "sku": "B1", "qty": 1})
    assert shop.cart(cart["id"])["total"] == 31.75
    token = shop.login({"user": "demo", "password": "demo-password"})["token"]
    user = shop.user_for(token)
    order = shop.checkout({"cart_id": cart["id"]}, user=user)
    assert order["status"] == "confirmed"
    assert order["order_id"].startswith("o-")
    assert shop.account("demo")["order_count"] == 1
    with pytest.raises(ShopError) as gone:
        shop.cart(cart["id"])
    assert gone.value.status == 404


def test_express_checkout_with_inline_items() -> None:
    order = Shop().checkout({"items": [{"sku": "C1", "qty": 3}]})
    assert order["total"] == 10.5
    assert order["user"] is None


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"sku": "ZZ", "qty": 1}, 404),
        ({"sku": "A1", "qty": 0}, 422),
        ({"sku": "A1", "qty": True}, 422),
        ({"sku": "A1", "qty": "x"}, 422),
        (["A1"], 422),
    ],
)
def test_bad_cart_requests(body: object, status: int) -> None:
    with pytest.raises(ShopError) as err:
        Shop().add_to_cart(body)
    assert err.value.status == status


def test_login_refuses_wrong_password() -> None:
    with pytest.raises(ShopError) as err:
        Shop().login({"user": "demo", "password": "nope"})
    assert err.value.status == 401


def test_search_matches_names_tags_and_skus() -> None:
    shop = Shop()
    assert {p["sku"] for p in shop.search("mug")} == {"A1", "B2"}
    assert [p["sku"] for p in shop.search("c1")] == ["C1"]
    assert shop.search("unicorn") == []
    with pytest.raises(ShopError):
        shop.search("  ")


def test_state_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shop_module, "MAX_ENTRIES", 10)
    shop = Shop()
    ids = [shop.add_to_cart({"sku": "A1"})["id"] for _ in range(25)]
    with pytest.raises(ShopError):
        shop.cart(ids[0])
    assert shop.cart(ids[-1])["items"] == [{"sku": "A1", "qty": 1}]
