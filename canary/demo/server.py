"""The demo shop's HTTP server: routing, JSON bodies, fault injection, X-Canary-Version."""

from __future__ import annotations

import html
import json
import os
import re
import sys
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from canary.demo.faults import USER_HEADER, Faults
from canary.demo.shop import Shop, ShopError

# Operational endpoints stay healthy whatever the faults, so launchers and routers can see the
# service is up while the shop itself misbehaves.
UNFAULTED = frozenset({"healthz", "version"})
MAX_BODY = 1 << 20

Route = tuple[str, re.Pattern[str], str]
ROUTES: tuple[Route, ...] = (
    ("GET", re.compile(r"/"), "home"),
    ("GET", re.compile(r"/healthz"), "healthz"),
    ("GET", re.compile(r"/version"), "version"),
    ("GET", re.compile(r"/api/products"), "products"),
    ("GET", re.compile(r"/api/products/(?P<sku>[^/]+)"), "product"),
    ("GET", re.compile(r"/api/search"), "search"),
    ("POST", re.compile(r"/api/cart"), "cart"),
    ("GET", re.compile(r"/api/cart/(?P<cart_id>[^/]+)"), "cart-get"),
    ("POST", re.compile(r"/api/checkout"), "checkout"),
    ("POST", re.compile(r"/api/login"), "login"),
    ("GET", re.compile(r"/api/account"), "account"),
    ("POST", re.compile(r"/api/feedback"), "feedback"),
    ("POST", re.compile(r"/api/echo"), "echo"),
    ("PUT", re.compile(r"/api/echo"), "echo"),
    ("PATCH", re.compile(r"/api/echo"), "echo"),
    ("DELETE", re.compile(r"/api/echo"), "echo"),
)

# What a "body"-broken endpoint answers: the right status with a plausible but wrong body.
WRONG_BODIES: dict[str, Any] = {
    "checkout": {"order_id": None, "status": "pending"},
    "cart": {"id": None, "items": [], "total": 0},
    "products": {"products": [], "count": 0},
    "search": {"query": None, "results": [], "count": 0},
}


class Response:
    """What a route answers, before the common headers are added."""

    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(
        self,
        status: int,
        body: Any,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or {}

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body, separators=(",", ":")).encode()


def _error(status: int, message: str) -> Response:
    return Response(status, {"error": message, "status": status})


class ShopServer(ThreadingHTTPServer):
    """A threaded HTTP server carrying the shop state, the faults and the version it reports."""

    daemon_threads = True
    request_queue_size = 1024  # bursts of new connections must not be refused

    def __init__(
        self, address: tuple[str, int], name: str, version: str, faults: Faults, shop: Shop
    ) -> None:
        self.name = name
        self.version = version
        self.faults = faults
        self.shop = shop
        super().__init__(address, ShopHandler)


class ShopHandler(BaseHTTPRequestHandler):
    """One connection; HTTP/1.1 with keep-alive so probes can reuse connections."""

    protocol_version = "HTTP/1.1"
    server_version = "canary-demo-shop"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    timeout = 60  # idle keep-alive connections must not hold a thread forever
    server: ShopServer

    def log_message(self, format: str, *args: Any) -> None:
        """Access logs stay off: at hundreds of requests per second they only drown the log."""

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_OPTIONS(self) -> None:
        self._send(Response(204, b"", headers={"Allow": "GET, POST, PUT, PATCH, DELETE, HEAD"}))

    def _handle(self, method: str) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        path = parsed.path.rstrip("/") or "/"
        body_bytes = self._read_body()
        if body_bytes is None:
            return
        try:
            response = self._dispatch(method, path, parsed.query, body_bytes)
        except ShopError as exc:
            response = _error(exc.status, exc.message)
        except Exception as exc:  # a bug in the demo: answer like a real service would
            print(f"demo {self.server.name}: {method} {path}: {exc!r}", file=sys.stderr)
            response = _error(500, "internal error")
        self._send(response, head=method == "HEAD")

    def _read_body(self) -> bytes | None:
        length_text = self.headers.get("Content-Length")
        if not length_text:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            self._send(_error(413 if length > MAX_BODY else 400, "bad Content-Length"))
            return None
        return self.rfile.read(length)

    def _dispatch(self, method: str, path: str, query: str, body: bytes) -> Response:
        lookup = "GET" if method == "HEAD" else method
        allowed: list[str] = []
        for route_method, pattern, endpoint in ROUTES:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if route_method != lookup:
                allowed.append(route_method)
                continue
            return self._run(endpoint, match.groupdict(), query, body)
        if allowed:
            return Response(
                405, {"error": "method not allowed"}, headers={"Allow": ", ".join(allowed)}
            )
        return _error(404, f"no route for {path}")

    def _run(self, endpoint: str, params: dict[str, str], query: str, body: bytes) -> Response:
        faults = self.server.faults
        if endpoint not in UNFAULTED:
            if self.headers.get(USER_HEADER):
                faults.user_request()
            delay = faults.delay_seconds()
            if delay > 0:
                time.sleep(delay)
            if faults.should_fail():
                return _error(500, "injected fault: error rate")
            if faults.broken_mode(endpoint) == "500":
                return _error(500, f"injected fault: {endpoint} is broken")
        handler: Callable[[dict[str, str], str, bytes], Response] = getattr(
            self, "_ep_" + endpoint.replace("-", "_")
        )
        response = handler(params, query, body)
        if endpoint not in UNFAULTED and faults.broken_mode(endpoint) == "body":
            response.body = WRONG_BODIES.get(endpoint, {"unexpected": True})
            response.content_type = "application/json"
        return response

    def _send(self, response: Response, head: bool = False) -> None:
        payload = response.encoded()
        self.send_response(response.status)
        self.send_header("X-Canary-Version", self.server.name)
        if payload or response.status != 204:
            self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.end_headers()
        if not head and payload:
            self.wfile.write(payload)

    def _json_body(self, body: bytes) -> Any:
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype == "application/x-www-form-urlencoded":
            return dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace")))
        if not body:
            raise ShopError(400, "a JSON body is required")
        try:
            return json.loads(body)
        except ValueError as exc:
            raise ShopError(400, f"body is not valid JSON: {exc}") from exc

    def _bearer_user(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self.server.shop.user_for(token.strip())

    # Endpoints: each takes (path params, query string, raw body).

    def _ep_home(self, params: dict[str, str], query: str, body: bytes) -> Response:
        if "application/json" in (self.headers.get("Accept") or ""):
            return Response(200, {"service": "canary demo shop", "version": self.server.version})
        rows = "".join(
            f'<li><a href="/api/products/{html.escape(p["sku"])}">{html.escape(p["name"])}</a>'
            f" - {p['price']:.2f}</li>"
            for p in self.server.shop.products()
        )
        page = (
            "<!doctype html><html><head><title>Canary demo shop</title></head><body>"
            f"<h1>Canary demo shop</h1><p>version {html.escape(self.server.version)} "
            f"({html.escape(self.server.name)})</p><ul>{rows}</ul></body></html>"
        )
        return Response(200, page, "text/html; charset=utf-8")

    def _ep_healthz(self, params: dict[str, str], query: str, body: bytes) -> Response:
        return Response(200, {"status": "ok", "pid": os.getpid()})

    def _ep_version(self, params: dict[str, str], query: str, body: bytes) -> Response:
        return Response(200, {"name": self.server.name, "version": self.server.version})

    def _ep_products(self, params: dict[str, str], query: str, body: bytes) -> Response:
        products = self.server.shop.products()
        return Response(200, {"products": products, "count": len(products)})

    def _ep_product(self, params: dict[str, str], query: str, body: bytes) -> Response:
        return Response(200, self.server.shop.product(urllib.parse.unquote(params["sku"])))

    def _ep_search(self, params: dict[str, str], query: str, body: bytes) -> Response:
        q = urllib.parse.parse_qs(query).get("q", [""])[0]
        results = self.server.shop.search(q)
        return Response(200, {"query": q, "results": results, "count": len(results)})

    def _ep_cart(self, params: dict[str, str], query: str, body: bytes) -> Response:
        cart = self.server.shop.add_to_cart(self._json_body(body))
        return Response(201, cart, headers={"Location": f"/api/cart/{cart['id']}"})

    def _ep_cart_get(self, params: dict[str, str], query: str, body: bytes) -> Response:
        return Response(200, self.server.shop.cart(params["cart_id"]))

    def _ep_checkout(self, params: dict[str, str], query: str, body: bytes) -> Response:
        order = self.server.shop.checkout(self._json_body(body), user=self._bearer_user())
        return Response(200, order)

    def _ep_login(self, params: dict[str, str], query: str, body: bytes) -> Response:
        return Response(200, self.server.shop.login(self._json_body(body)))

    def _ep_account(self, params: dict[str, str], query: str, body: bytes) -> Response:
        user = self._bearer_user()
        if user is None:
            return Response(
                401,
                {"error": "a valid Bearer token is required", "status": 401},
                headers={"WWW-Authenticate": 'Bearer realm="canary-demo"'},
            )
        return Response(200, self.server.shop.account(user))

    def _ep_feedback(self, params: dict[str, str], query: str, body: bytes) -> Response:
        data = self._json_body(body)
        if not isinstance(data, dict) or "rating" not in data:
            raise ShopError(422, "rating is required")
        return Response(202, {"status": "received", "rating": data["rating"]})

    def _ep_echo(self, params: dict[str, str], query: str, body: bytes) -> Response:
        """Echoes the request, so probes can check what they actually sent."""
        return Response(
            200,
            {
                "method": self.command,
                "path": self.path,
                "content_type": self.headers.get("Content-Type"),
                "body": body.decode("utf-8", "replace"),
                "headers": {k: v for k, v in self.headers.items()},
            },
        )
