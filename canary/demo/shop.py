"""The demo shop's domain: catalogue, carts, orders and logins; thread-safe, bounded memory."""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

# Enough state for hours of probing at hundreds of req/s without growing without bound.
MAX_ENTRIES = 20_000

PRODUCTS: tuple[dict[str, Any], ...] = (
    {"sku": "A1", "name": "Canary mug", "price": 12.5, "stock": 120, "tags": ["kitchen", "mug"]},
    {"sku": "A2", "name": "Canary T-shirt", "price": 24.0, "stock": 80, "tags": ["clothing"]},
    {"sku": "A3", "name": "Birdhouse", "price": 39.9, "stock": 15, "tags": ["garden"]},
    {"sku": "B1", "name": "Bird seed, 1 kg", "price": 6.75, "stock": 500, "tags": ["food"]},
    {"sku": "B2", "name": "Travel mug", "price": 18.0, "stock": 60, "tags": ["kitchen", "mug"]},
    {"sku": "C1", "name": "Sticker pack", "price": 3.5, "stock": 1000, "tags": ["office"]},
)

USERS = {"demo": "demo-password", "alice": "wonderland"}


class ShopError(Exception):
    """A request the shop refuses, with the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class Line:
    sku: str
    qty: int


def _bounded_put(table: OrderedDict[str, Any], key: str, value: Any) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > MAX_ENTRIES:
        table.popitem(last=False)


class Shop:
    """In-memory shop state shared by all request threads."""

    def __init__(self) -> None:
        self._products = {p["sku"]: p for p in PRODUCTS}
        self._carts: OrderedDict[str, list[Line]] = OrderedDict()
        self._orders: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._tokens: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def products(self) -> list[dict[str, Any]]:
        return [dict(p) for p in PRODUCTS]

    def product(self, sku: str) -> dict[str, Any]:
        found = self._products.get(sku)
        if found is None:
            raise ShopError(404, f"no product {sku!r}")
        return dict(found)

    def search(self, query: str) -> list[dict[str, Any]]:
        q = query.strip().lower()
        if not q:
            raise ShopError(400, "query parameter q is required")
        return [
            dict(p)
            for p in PRODUCTS
            if q in p["name"].lower() or q == p["sku"].lower() or q in p["tags"]
        ]

    def _line(self, raw: Any) -> Line:
        if not isinstance(raw, dict):
            raise ShopError(422, "an item must be an object with sku and qty")
        sku, qty = raw.get("sku"), raw.get("qty", 1)
        if not isinstance(sku, str) or sku not in self._products:
            raise ShopError(404, f"no product {sku!r}")
        if isinstance(qty, str) and qty.isdigit():
            qty = int(qty)
        if not isinstance(qty, int) or isinstance(qty, bool) or not 1 <= qty <= 100:
            raise ShopError(422, "qty must be an integer from 1 to 100")
        return Line(sku, qty)

    def _cart_view(self, cart_id: str, lines: list[Line]) -> dict[str, Any]:
        return {
            "id": cart_id,
            "items": [{"sku": ln.sku, "qty": ln.qty} for ln in lines],
            "total": self._total(lines),
        }

    def _total(self, lines: list[Line]) -> float:
        return round(sum(self._products[ln.sku]["price"] * ln.qty for ln in lines), 2)

    def add_to_cart(self, body: Any) -> dict[str, Any]:
        """Create a cart with one line, or add the line to ``cart_id`` when the body names one."""
        line = self._line(body)
        cart_id = body.get("cart_id") if isinstance(body, dict) else None
        with self._lock:
            if cart_id is not None:
                lines = self._carts.get(str(cart_id))
                if lines is None:
                    raise ShopError(404, f"no cart {cart_id!r}")
            else:
                cart_id, lines = "c-" + secrets.token_hex(6), []
            lines.append(line)
            _bounded_put(self._carts, str(cart_id), lines)
            return self._cart_view(str(cart_id), list(lines))

    def cart(self, cart_id: str) -> dict[str, Any]:
        with self._lock:
            lines = self._carts.get(cart_id)
            if lines is None:
                raise ShopError(404, f"no cart {cart_id!r}")
            return self._cart_view(cart_id, list(lines))

    def checkout(self, body: Any, user: str | None = None) -> dict[str, Any]:
        """Order a cart (``cart_id``) or, for an express checkout, the ``items`` given inline."""
        if not isinstance(body, dict):
            raise ShopError(422, "expected an object with cart_id or items")
        with self._lock:
            if "cart_id" in body:
                lines = self._carts.pop(str(body["cart_id"]), None)
                if lines is None:
                    raise ShopError(404, f"no cart {body['cart_id']!r}")
            elif isinstance(body.get("items"), list) and body["items"]:
                lines = [self._line(raw) for raw in body["items"]]
            else:
                raise ShopError(422, "expected cart_id or a non-empty items list")
            order = {
                "order_id": "o-" + secrets.token_hex(6),
                "status": "confirmed",
                "items": [{"sku": ln.sku, "qty": ln.qty} for ln in lines],
                "total": self._total(lines),
                "user": user,
            }
            _bounded_put(self._orders, str(order["order_id"]), order)
            return dict(order)

    def login(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ShopError(422, "expected user and password")
        user, password = body.get("user") or body.get("username"), body.get("password")
        if not isinstance(user, str) or USERS.get(user) != password:
            raise ShopError(401, "invalid user or password")
        token = secrets.token_hex(16)
        with self._lock:
            _bounded_put(self._tokens, token, user)
        return {"token": token, "token_type": "Bearer", "user": user}

    def user_for(self, token: str) -> str | None:
        with self._lock:
            return self._tokens.get(token)

    def account(self, user: str) -> dict[str, Any]:
        with self._lock:
            orders = [dict(o) for o in self._orders.values() if o["user"] == user]
        return {"user": user, "orders": orders[-20:], "order_count": len(orders)}
