"""The prober against real HTTP servers on 127.0.0.1: a small shop of our own, and httpbin."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from canary.local import free_port
from canary.probing import Target, TransactionResult, run_transaction
from canary.probing import runner as runner_module
from canary.transactions import Transaction, load_transaction

pytestmark = pytest.mark.integration
MIB = 1 << 20


class Shop:
    """State of the test service, shared by its handler threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: dict[int, dict[str, Any]] = {}
        self.ids = count(1)
        self.sessions = count(1)
        self.flaky: dict[str, int] = {}
        self.log: list[tuple[str, str, dict[str, str]]] = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    shop: Shop

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any = b"", headers: dict[str, str] | None = None) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        ctype = "application/json" if not isinstance(body, bytes) else "text/plain"
        for k, v in {"Content-Type": ctype, **(headers or {})}.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(raw)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _cookie(self, name: str) -> str | None:
        for part in (self.headers.get("Cookie") or "").split(";"):
            k, _, v = part.strip().partition("=")
            if k == name:
                return v
        return None

    def do_GET(self) -> None:
        self._route()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_GET

    def _route(self) -> None:
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        path = url.path
        shop = self.shop
        body = self._body() if self.command in ("POST", "PUT", "PATCH", "DELETE") else b""
        with shop.lock:
            shop.log.append((self.command, self.path, dict(self.headers)))
        if path == "/":
            sid = f"s{next(shop.sessions)}"
            self._send(200, b"home", {"Set-Cookie": f"sid={sid}; Path=/", "X-Session": sid})
        elif path == "/login" and self.command == "POST":
            data = json.loads(body or b"{}")
            if data.get("password") == "pw":
                self._send(200, {"token": f"tok-{data.get('user')}-{self._cookie('sid')}"})
            else:
                self._send(401, {"error": "bad credentials"})
        elif path == "/me":
            token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            if token.endswith(f"-{self._cookie('sid')}") and token.startswith("tok-"):
                self._send(200, {"user": token.split("-")[1], "sid": self._cookie("sid")})
            else:
                self._send(403, {"error": "who are you?", "saw": token})
        elif path == "/items" and self.command == "POST":
            with shop.lock:
                new = next(shop.ids)
                shop.items[new] = json.loads(body)
            self._send(201, {"id": new, **shop.items[new]}, {"Location": f"/items/{new}"})
        elif path.startswith("/items/"):
            ident = int(path.rsplit("/", 1)[1])
            with shop.lock:
                item = shop.items.get(ident)
                if item is not None and self.command == "DELETE":
                    del shop.items[ident]
                    self._send(204)
                    return
            self._send(200, {"id": ident, **item}) if item else self._send(404, {"error": "gone"})
        elif path == "/echo":
            self._send(
                200,
                {
                    "method": self.command,
                    "content_type": self.headers.get("Content-Type"),
                    "body": body.decode(),
                    "query": q,
                    "version": self.headers.get("X-Canary", "stable"),
                    "ua": self.headers.get("User-Agent"),
                },
            )
        elif path == "/flaky":
            with shop.lock:
                seen = shop.flaky[q["key"]] = shop.flaky.get(q["key"], 0) + 1
            self._send(503 if seen <= int(q["fail"]) else 200, {"seen": seen})
        elif path == "/slow":
            time.sleep(float(q.get("s", "2")))
            self._send(200, {"slow": True})
        elif path == "/drip":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.05)
        elif path == "/huge":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(3 * MIB))
            self.end_headers()
            chunk = b"[" + b"1," * (MIB // 2 - 1)
            # The prober stops reading at its cap and hangs up.
            with contextlib.suppress(OSError):
                self.wfile.write(chunk + b"1" * (3 * MIB - len(chunk)))
        elif path == "/loop":
            self._send(302, b"", {"Location": "/loop"})
        elif path == "/redirect":
            self._send(int(q.get("code", "302")), b"", {"Location": q["to"]})
        elif path == "/garbage":
            self._send(200, b"{not json", {"Content-Type": "application/json"})
        elif path == "/close":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        elif path.startswith("/status/"):
            self._send(int(path.rsplit("/", 1)[1]), {"status": path})
        else:
            self._send(404, {"error": "no route"})


@pytest.fixture
def shop() -> Iterator[tuple[str, Shop]]:
    state = Shop()
    handler = type("ShopHandler", (Handler,), {"shop": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    # The prober hangs up on purpose (timeouts, body cap): not worth a traceback.
    server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []
    monkeypatch.setattr(runner_module, "sleep", waits.append)
    return waits


def tx(**fields: Any) -> Transaction:
    data = {"transaction_name": "t", "entrypoint_url": "https://shop.example.com/", **fields}
    return Transaction.model_validate(data)


def run(t: Transaction, base: str, **kw: Any) -> TransactionResult:
    result = run_transaction(t, Target("canary", base, kw.pop("headers", {})), **kw)
    json.dumps(result.to_dict())  # results must always be plain JSON
    return result


CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "transactions"


def test_login_capture_token_cookies_and_crud(shop: tuple[str, Shop]) -> None:
    base, state = shop
    t = load_transaction(CONFIGS / "login-and-crud.yaml")
    result = run(t, base, env={"SHOP_PASSWORD": "pw"}, now=lambda: 1000.0)
    assert result.ok, result.error
    assert (result.version, result.transaction, result.t) == ("canary", t.name, 1000.0)
    assert [s.name for s in result.steps] == [
        "entrypoint",
        "login",
        "me",
        "create",
        "read",
        "delete",
    ]
    assert (
        result.status == 204 and result.latency_ms >= sum(s.latency_ms for s in result.steps) * 0.5
    )
    assert state.items == {}
    assert all("pw" not in json.dumps(s.url) for s in result.steps)


def test_each_run_has_its_own_cookies_even_with_a_shared_session(shop: tuple[str, Shop]) -> None:
    base, _ = shop
    t = load_transaction(CONFIGS / "login-and-crud.yaml")
    with requests.Session() as session:
        session.cookies.set("keep", "me")
        first = run(t, base, session=session, env={"SHOP_PASSWORD": "pw"})
        second = run(t, base, session=session, env={"SHOP_PASSWORD": "pw"})
        assert session.cookies.get("keep") == "me" and session.cookies.get("sid") is None
    assert first.ok and second.ok, (first.error, second.error)


def test_concurrent_runs_are_independent(shop: tuple[str, Shop]) -> None:
    base, _ = shop
    t = load_transaction(CONFIGS / "login-and-crud.yaml")

    def one(_: int) -> TransactionResult:
        with requests.Session() as s:
            return run(t, base, session=s, env={"SHOP_PASSWORD": "pw"})

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(24)))
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]


def test_failure_names_the_step_and_check_and_skips_needless_teardown(
    shop: tuple[str, Shop],
) -> None:
    base, _state = shop
    t = load_transaction(CONFIGS / "login-and-crud.yaml")
    result = run(t, base, env={"SHOP_PASSWORD": "wrong"})
    assert not result.ok and result.status == 401
    assert result.error is not None
    assert result.error.startswith(
        "step 1 'login' (POST " + base + "/login): status 401, expected 200"
    )
    assert "bad credentials" in result.error
    # The teardown needs the item's id, which was never captured: it is skipped, not failed.
    assert [s.name for s in result.steps] == ["entrypoint", "login"]
    missing_env = run(t, base, env={})
    assert (
        missing_env.error and "environment variable SHOP_PASSWORD is not set" in missing_env.error
    )


def test_retries_are_recorded_attempt_by_attempt(
    shop: tuple[str, Shop], fast_retries: list[float]
) -> None:
    base, _ = shop
    retry = {"attempts": 3, "when": ["5xx"], "backoff": 0.1, "max_backoff": 0.15}
    good = run(tx(steps=[{"method": "GET", "url": "/flaky?key=a&fail=2", "retry": retry}]), base)
    assert good.ok, good.error
    assert [(s.attempt, s.status, s.ok) for s in good.steps[1:]] == [
        (1, 503, False),
        (2, 503, False),
        (3, 200, True),
    ]
    assert len(fast_retries) == 2 and 0.05 <= fast_retries[0] <= 0.1 and fast_retries[1] <= 0.15
    bad = run(
        tx(steps=[{"method": "GET", "url": "/flaky?key=b&fail=5", "retry": {"attempts": 2}}]), base
    )
    assert bad.error and "(attempt 2 of 2): status 503" in bad.error
    not_retried = run(
        tx(steps=[{"method": "GET", "url": "/status/404", "retry": {"attempts": 3}}]), base
    )
    assert len(not_retried.steps) == 2


def test_timeouts_are_failures(shop: tuple[str, Shop]) -> None:
    base, _ = shop
    # Without the deadline /slow would answer 200 after 2 s and /drip would never end: the
    # outcomes say the deadline held, with no clock in the assertion.
    slow = run(tx(steps=[{"method": "GET", "url": "/slow?s=2", "timeout": 0.3}]), base)
    drip = run(tx(steps=[{"method": "GET", "url": "/drip", "timeout": 0.5}]), base)
    assert not slow.ok and slow.error and "no status line within 0.3s" in slow.error
    assert not drip.ok and drip.error and "within 0.5s" in drip.error


def test_connection_refused_and_closed_are_failures() -> None:
    # Claimed for this test: no server of another xdist worker can be handed it meanwhile.
    port = free_port()
    result = run(tx(steps=[{"method": "GET", "url": "/"}]), f"http://127.0.0.1:{port}")
    assert not result.ok and result.status is None
    assert (
        result.error
        == f"entrypoint (GET http://127.0.0.1:{port}/): cannot connect: connection refused"
    )


def test_server_hanging_up_and_garbage_are_failures(shop: tuple[str, Shop]) -> None:
    base, _ = shop
    closed = run(tx(steps=[{"method": "GET", "url": "/close"}]), base)
    assert not closed.ok and closed.error and "step 1 (GET" in closed.error
    garbage = run(
        tx(
            steps=[
                {"method": "GET", "url": "/garbage", "response_validation": [{"jsonpath": "$.a"}]}
            ]
        ),
        base,
    )
    assert (
        garbage.error and "response_validation[0] jsonpath $.a: body is not JSON" in garbage.error
    )


def test_huge_body_is_capped(shop: tuple[str, Shop]) -> None:
    base, _ = shop
    t = tx(
        steps=[
            {"method": "GET", "url": "/huge", "response_validation": [{"body_size": {"le": MIB}}]}
        ]
    )
    result = run(t, base)
    assert result.ok, result.error
    assert result.steps[1].size_bytes == MIB and result.steps[1].truncated
    t = tx(steps=[{"method": "GET", "url": "/huge", "response_validation": [{"jsonpath": "$[0]"}]}])
    assert "truncated" in (run(t, base).error or "")


@pytest.mark.parametrize(
    ("step", "content_type", "body"),
    [
        ({"payload": {"a": 1}}, "application/json", '{"a": 1}'),
        ({"payload": [1, "x"], "payload_type": "json"}, "application/json", '[1, "x"]'),
        (
            {"payload_type": "form", "payload": {"rating": "5", "t": "a b"}},
            "application/x-www-form-urlencoded",
            "rating=5&t=a+b",
        ),
        ({"payload_type": "xml", "payload": "<a>1</a>"}, "application/xml", "<a>1</a>"),
        ({"payload_type": "raw", "payload": "just text"}, None, "just text"),
        ({"payload": "a string is raw"}, None, "a string is raw"),
        (
            {"payload_type": "raw", "payload": "x", "headers": {"Content-Type": "text/csv"}},
            "text/csv",
            "x",
        ),
        (
            {"payload_type": "xml", "payload": "<a/>", "headers": {"content-type": "text/xml"}},
            "text/xml",
            "<a/>",
        ),
        ({}, None, ""),
    ],
)
def test_payload_types_and_content_types(
    shop: tuple[str, Shop], step: dict[str, Any], content_type: str | None, body: str
) -> None:
    base, _ = shop
    checks = [
        {"jsonpath": "$.content_type", "eq": content_type},
        {"jsonpath": "$.body", "eq": body},
        {"jsonpath": "$.ua", "matches": "^canary-probe"},
    ]
    result = run(
        tx(steps=[{"method": "POST", "url": "/echo", **step, "response_validation": checks}]), base
    )
    assert result.ok, result.error


def test_target_headers_and_repointing_and_query(shop: tuple[str, Shop]) -> None:
    base, state = shop
    t = tx(
        steps=[
            {
                "method": "GET",
                "url": "https://shop.example.com/echo",
                "query": {"n": 1, "tags": ["a", "b"], "on": True},
                "response_validation": [
                    {"jsonpath": "$.version", "eq": "canary"},
                    {"jsonpath": "$.query.n", "eq": "1"},
                    {"jsonpath": "$.query.on", "eq": "true"},
                ],
            }
        ]
    )
    result = run(t, base + "/", headers={"X-Canary": "canary"})
    assert result.ok, result.error
    assert result.steps[1].url == base + "/echo?n=1&tags=a&tags=b&on=true"
    assert all(h.get("X-Canary") == "canary" for _, _, h in state.log)


def test_entrypoint_must_answer_below_400(shop: tuple[str, Shop]) -> None:
    base, _ = shop
    t = Transaction.model_validate(
        {
            "transaction_name": "e",
            "entrypoint_url": "/status/404",
            "steps": [{"method": "GET", "url": "/"}],
        }
    )
    result = run(t, base)
    assert (
        result.error
        and result.error.startswith("entrypoint (GET ")
        and "status 404, expected below 400" in result.error
    )
    assert len(result.steps) == 1


def test_secrets_never_reach_results(shop: tuple[str, Shop]) -> None:
    base, _ = shop
    t = tx(
        steps=[
            {
                "method": "POST",
                "url": "/echo?key={{ secret.API_KEY }}",
                "auth": {"bearer": "{{ secret.API_KEY }}"},
                "payload": {"k": "{{ secret.API_KEY }}"},
                "response_validation": [{"jsonpath": "$.body", "eq": "nope"}],
            }
        ]
    )
    result = run(t, base, env={"API_KEY": "hunter2 !"})
    dumped = json.dumps(result.to_dict())
    assert not result.ok and "***" in dumped
    assert "hunter2" not in dumped and "hunter2%20" not in dumped


def test_captured_secret_is_redacted(shop: tuple[str, Shop]) -> None:
    base, _ = shop
    t = tx(
        steps=[
            {"method": "POST", "url": "/login", "payload": {"user": "bo", "password": "pw"},
             "capture": {"token": {"jsonpath": "$.token", "secret": True}}},
            {"method": "GET", "url": "/status/500?t={{ token }}"},
        ]
    )  # fmt: skip
    result = run(t, base)
    assert result.error and "/status/500?t=***" in result.error
    assert "tok-" not in json.dumps(result.to_dict())


def test_head_and_captures_across_steps(shop: tuple[str, Shop]) -> None:
    base, _ = shop
    t = tx(
        steps=[
            {"method": "HEAD", "url": "/echo", "response_validation": [{"body_size": 0}]},
            {"method": "POST", "url": "/items", "payload": {"n": 1}, "expected_response_code": 201,
             "capture": {"where": {"header": "Location"}, "id": "$.id"}},
            {"method": "GET", "url": "{{ where }}",
             "response_validation": [{"jsonpath": "$.id", "eq": "{{ id }}"},
                                     {"jsonpath": "$.n", "eq": 1}]},
        ]
    )  # fmt: skip
    result = run(t, base)
    assert result.ok, result.error
    assert result.steps[-1].url == base + "/items/1"


def test_redirects_are_repointed_at_the_target(shop: tuple[str, Shop]) -> None:
    base, state = shop
    t = tx(
        steps=[
            {"method": "GET", "url": "/redirect?to=https://shop.example.com/echo",
             "auth": {"bearer": "t0k"},
             "response_validation": [{"jsonpath": "$.method", "eq": "GET"}]},
            {"method": "POST", "url": "/redirect?code=303&to=/echo", "payload": {"a": 1},
             "response_validation": [{"jsonpath": "$.method", "eq": "GET"},
                                     {"jsonpath": "$.body", "eq": ""}]},
            {"method": "POST", "url": "/redirect?code=307&to=/echo", "payload": {"a": 1},
             "response_validation": [{"jsonpath": "$.body", "eq": '{"a": 1}'}]},
            {"method": "GET", "url": "/redirect?to=/echo", "follow_redirects": False,
             "expected_response_code": 302,
             "response_validation": [{"header": "Location", "eq": "/echo"}]},
        ]
    )  # fmt: skip
    result = run(t, base)
    assert result.ok, result.error
    echoed = [h for m, p, h in state.log if p == "/echo" and m == "GET"]
    assert echoed[0].get("Authorization") == "Bearer t0k"  # same origin after re-pointing
    endless = run(
        tx(steps=[{"method": "GET", "url": "/redirect?to=/redirect%3Fto%3D/redirect"}]), base
    )
    assert endless.error and "step 1 (GET" in endless.error
    loop = run(tx(steps=[{"method": "GET", "url": "/loop"}]), base)
    assert loop.error and loop.error.endswith("more than 10 redirects")


def test_a_run_never_raises_even_on_a_malformed_target() -> None:
    result = run(tx(steps=[{"method": "GET", "url": "/"}]), "http://[::1")
    assert not result.ok and result.error


# --- httpbin: seed-only definitions, as the maintainers check them --------------------------------


@pytest.fixture(scope="module")
def httpbin_url() -> Iterator[str]:
    import httpbin
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, httpbin.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


SEED = """\
transaction_name: seed-httpbin
entrypoint_url: https://prod.example.com/get
steps:
  - method: POST
    url: /anything/cart
    payload:
      sku: A1
      qty: 1
    response_validation:
      - jsonpath: "$.json.sku"
        equals: "A1"
      - jsonpath: "$.json.qty"
        equals: 1
      - regex: "\\"sku\\":\\\\s*\\"A1\\""
  - method: POST
    url: https://prod.example.com/post
    payload_type: form
    payload: {rating: "5"}
    expected_response_code: [200, 202]
    response_validation:
      - jsonpath: "$.form.rating"
        equals: "5"
      - jsonpath: "$.headers['Content-Type']"
        equals: "application/x-www-form-urlencoded"
  - method: PUT
    url: /put
    payload_type: xml
    payload: "<cart><sku>A1</sku></cart>"
    response_validation:
      - jsonpath: "$.data"
        equals: "<cart><sku>A1</sku></cart>"
      - jsonpath: "$.headers['Content-Type']"
        equals: "application/xml"
  - method: DELETE
    url: /status/204
    expected_response_code: 204
sla_success_threshold: 99.0
error_budget: 5
"""


def test_seed_only_definition_against_httpbin(httpbin_url: str, tmp_path: Path) -> None:
    path = tmp_path / "seed.yaml"
    path.write_text(SEED)
    t = load_transaction(path)
    result = run(t, httpbin_url)
    assert result.ok, result.error
    as_json = tmp_path / "seed.json"
    as_json.write_text(json.dumps(t.model_dump(mode="json")))
    assert run(load_transaction(as_json), httpbin_url).ok


def test_seed_failures_against_httpbin(httpbin_url: str, tmp_path: Path) -> None:
    path = tmp_path / "seed.yaml"
    path.write_text(
        SEED.replace("equals: 1\n", 'equals: "1"\n').replace("/status/204", "/status/503")
    )
    result = run(load_transaction(path), httpbin_url)
    assert (
        result.error
        and 'response_validation[1] jsonpath $.json.qty: expected "1", found 1' in result.error
    )
    html = tmp_path / "html.yaml"
    html.write_text(
        "transaction_name: h\nentrypoint_url: /\nsteps:\n  - method: GET\n    url: /html\n"
        "    response_validation:\n      - jsonpath: $.a\n"
    )
    result = run(load_transaction(html), httpbin_url)
    assert result.error and "body is not JSON" in result.error
