"""The prober against servers that misbehave on purpose: dripping bytes, stale keep-alive, redirects.

Each server here is real (sockets on 127.0.0.1) and written for the one fault it shows.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from canary.errors import ConfigError
from canary.probing import Target, TransactionResult, run_transaction
from canary.probing.http import ProbeSession
from canary.transactions import Transaction, load_transaction
from canary.transactions.jsonschema_check import first_error

pytestmark = pytest.mark.integration

# How long a test waits for a probe that should end within its timeout: far above it, so a busy
# machine does not fail the test, far below "forever", which is what a drip costs without a fix.
CEILING_S = 30.0


class RawServer:
    """A TCP server that hands each connection to ``serve(conn, stop)`` in its own thread."""

    def __init__(self, serve: Callable[[socket.socket, threading.Event], None]) -> None:
        self.serve = serve
        self.stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self.requests: list[bytes] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        # OSError: the prober hung up, which is the point of most tests here.
        with conn, contextlib.suppress(OSError):
            self.serve(conn, self.stop)

    def read_request(self, conn: socket.socket) -> bytes | None:
        """One request's head (and its Content-Length body), or None when the client left."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(rest) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            rest += chunk
        with self.lock:
            self.requests.append(head)
        return head

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        self.thread.join(5)


@pytest.fixture
def raw_server() -> Iterator[
    Callable[[Callable[[socket.socket, threading.Event], None]], RawServer]
]:
    started: list[RawServer] = []

    def start(serve: Callable[[socket.socket, threading.Event], None]) -> RawServer:
        server = RawServer(serve)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def drip(conn: socket.socket, stop: threading.Event, fast: bytes, slow: bytes, gap: float) -> None:
    """Send ``fast`` at once, then ``slow`` one byte every ``gap`` seconds, then repeat it."""
    conn.sendall(fast)
    while not stop.is_set():
        for byte in slow:
            if stop.wait(gap):
                return
            conn.sendall(bytes([byte]))


def tx(**fields: Any) -> Transaction:
    data = {"transaction_name": "t", "entrypoint_url": "/", **fields}
    return Transaction.model_validate(data)


def bounded_call(call: Callable[[], Any]) -> Any:
    """``call()`` in a thread; fail the test (instead of hanging it) past CEILING_S."""
    pool = ThreadPoolExecutor(1)
    try:
        return pool.submit(call).result(timeout=CEILING_S)
    except TimeoutError:
        pytest.fail(f"still running after {CEILING_S:g}s")
    finally:
        pool.shutdown(wait=False)  # a stuck thread is a daemon: it must not hang the suite too


def run_bounded(t: Transaction, base: str, **kw: Any) -> TransactionResult:
    result: TransactionResult = bounded_call(
        lambda: run_transaction(t, Target("canary", base), **kw)
    )
    return result


# --- 6: a step's timeout is a hard deadline ---------------------------------------------------


@pytest.mark.parametrize(
    ("fast", "slow", "stalled"),
    [
        (b"", b"HTTP/1.1 200 OK\r\n", "no status line within 0.5s"),
        (b"HTTP/1.1 200 OK\r\n", b"X-Pad: abcdefgh\r\n", "headers not complete within 0.5s"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n",
            b"x",
            "body not complete within 0.5s",
        ),
    ],
    ids=["status-line", "headers", "body"],
)
def test_a_dripping_server_cannot_hold_a_probe_past_its_timeout(
    raw_server: Any, fast: bytes, slow: bytes, stalled: str
) -> None:
    def serve(conn: socket.socket, stop: threading.Event) -> None:
        server.read_request(conn)
        drip(conn, stop, fast, slow, 0.1)

    server = raw_server(serve)
    # Each byte arrives well within the timeout: only a deadline over the whole exchange ends it.
    t = tx(entrypoint_url="/", timeout=0.5, steps=[{"method": "GET", "url": "/"}])
    with ProbeSession() as session:
        result = run_bounded(t, server.url, session=session)
        again = run_bounded(t, server.url, session=session)  # the session is still usable
    for r in (result, again):
        assert not r.ok and r.status is None
        assert r.error == f"entrypoint (GET {server.url}/): {stalled}", r.error
        assert r.steps[0].error == stalled


def test_a_tls_handshake_that_drips_is_cut_off_too(raw_server: Any) -> None:
    def serve(conn: socket.socket, stop: threading.Event) -> None:
        conn.recv(65536)  # the ClientHello; the answer is a TLS record header, byte by byte
        drip(conn, stop, b"", b"\x16\x03\x03\x40\x00", 0.1)

    server = raw_server(serve)
    base = server.url.replace("http://", "https://")
    t = tx(timeout=0.5, steps=[{"method": "GET", "url": "/"}])
    result = run_bounded(t, base)
    assert result.error == f"entrypoint (GET {base}/): no TLS handshake within 0.5s", result.error


# --- 7: no $ref is ever fetched -----------------------------------------------------------------


def test_a_remote_ref_is_refused_at_load_and_never_fetched(raw_server: Any, tmp_path: Path) -> None:
    def serve(conn: socket.socket, stop: threading.Event) -> None:
        server.read_request(conn)
        drip(conn, stop, b"", b"HTTP/1.1 200 OK\r\n", 0.5)

    server = raw_server(serve)
    remote = f"{server.url}/schema.json"
    path = tmp_path / "ref.yaml"
    path.write_text(
        "transaction_name: ref\n"
        "entrypoint_url: /\n"
        "steps:\n"
        "  - method: GET\n"
        "    url: /\n"
        "    response_validation:\n"
        "      - json_schema:\n"
        "          type: object\n"
        "          properties:\n"
        f"            item: {{$ref: '{remote}'}}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_transaction(path)
    (problem,) = [str(p) for p in info.value.problems]
    assert problem.startswith(f"{path}:8:11: steps[0].response_validation[0].json_schema: ")
    assert f"properties/item/$ref: $ref '{remote}' points outside the schema" in problem
    # A schema that skipped the load-time check (a hand-built model) is still not fetched.
    schema = {"type": "object", "properties": {"item": {"$ref": remote}}}
    why = bounded_call(lambda: first_error(schema, {"item": 1}))
    assert why is not None and why.startswith("cannot check against the schema")
    assert server.requests == []


def test_refs_inside_the_schema_still_work() -> None:
    schema = {
        "$defs": {"sku": {"type": "string", "pattern": "^[A-Z][0-9]$"}},
        "type": "object",
        "properties": {"sku": {"$ref": "#/$defs/sku"}},
    }
    t = tx(steps=[{"method": "GET", "url": "/", "response_validation": [{"json_schema": schema}]}])
    check = t.steps[0].response_validation[0]
    assert check.json_schema is not None
    assert first_error(check.json_schema, {"sku": "A1"}) is None
    assert first_error(check.json_schema, {"sku": "a1"}) == (
        "at $['sku']: 'a1' does not match '^[A-Z][0-9]$'"
    )
    with pytest.raises(ValueError, match="'#/\\$defs/nope' does not resolve"):
        tx(
            steps=[
                {
                    "method": "GET",
                    "url": "/",
                    "response_validation": [{"json_schema": {"$ref": "#/$defs/nope"}}],
                }
            ]
        )


# --- 15: a pooled connection the server already closed ----------------------------------------


def test_a_stale_keep_alive_connection_is_retried_once_on_a_new_one(raw_server: Any) -> None:
    def serve(conn: socket.socket, stop: threading.Event) -> None:
        # Keep-alive timeout zero: the server answers one request per connection and keeps it
        # open, but takes the next request on it as arriving after the timeout and hangs up
        # without answering (what gunicorn does when a request races its keep-alive timer).
        if server.read_request(conn) is None:
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        server.read_request(conn)

    server = raw_server(serve)
    t = tx(steps=[{"method": "POST", "url": "/", "payload": {"a": 1}}])
    runs_per_thread, threads = 200, 4

    def probe(_: int) -> list[TransactionResult]:
        with ProbeSession() as session:
            return [
                run_transaction(t, Target("canary", server.url), session=session)
                for _ in range(runs_per_thread)
            ]

    with ThreadPoolExecutor(threads) as pool:
        results = [r for batch in pool.map(probe, range(threads)) for r in batch]
    failed = [r.error for r in results if not r.ok]
    assert failed == [], f"{len(failed)} of {len(results)} runs failed, e.g. {failed[0]}"
    note = (
        "the server closed the connection without answering "
        "(a reused connection; sent again on a new one)"
    )
    again = [(1, note), (2, None)]
    shapes = [[(s.attempt, s.error) for s in r.steps] for r in results]
    # Each session's first request goes out on a new connection; every other one on a reused
    # connection, then once more on a new one.
    assert shapes.count([(1, None), *again]) == threads
    assert shapes.count([*again, *again]) == len(results) - threads


# --- 9: what follows a redirect to another origin ---------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    """Redirects ``/away?code=C&to=URL``; answers anything else with what it was sent."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str, dict[str, str], bytes]]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _any(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append((self.command, self.path, dict(self.headers), body))
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/away":
            self.send_response(int(q.get("code", "302")))
            self.send_header("Location", q["to"])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        reply = json.dumps({"body": body.decode(), "headers": dict(self.headers)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_GET = do_POST = _any


@pytest.fixture
def two_origins() -> Iterator[tuple[tuple[str, list[Any]], tuple[str, list[Any]]]]:
    servers = []
    for _ in range(2):
        seen: list[Any] = []
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_Recorder,), {"seen": seen}))
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
        servers.append((httpd, f"http://127.0.0.1:{httpd.server_address[1]}", seen))
    try:
        yield (servers[0][1], servers[0][2]), (servers[1][1], servers[1][2])
    finally:
        for httpd, _, _ in servers:
            httpd.shutdown()
            httpd.server_close()


SECRET = 'k3y "quoted" ü'


def _redirecting(elsewhere: str, **step: Any) -> Transaction:
    return tx(
        headers={"X-Api-Key": "{{ secret.API_KEY }}", "Cookie": "session=abc"},
        auth={"basic": {"username": "bob", "password": "{{ secret.API_KEY }}"}},
        steps=[{"method": "GET", "url": f"/away?to={elsewhere}/collect", **step}],
    )


def test_redirects_to_another_origin_carry_nothing_from_the_definition(
    two_origins: tuple[tuple[str, list[Any]], tuple[str, list[Any]]],
) -> None:
    (base, _), (elsewhere, seen) = two_origins
    env = {"API_KEY": SECRET}
    target = Target("canary", base, {"X-Canary": "always"})

    default = run_transaction(_redirecting(elsewhere), target, env=env)
    assert not default.ok and default.status == 302
    assert default.error == (
        f"step 1 (GET {base}/away?to={elsewhere}/collect): status 302 redirects to another "
        f"origin ({elsewhere}/collect); follow_redirects is same-origin (any would follow it, "
        "sending nothing from the definition)"
    )
    assert seen == []
    legacy = run_transaction(_redirecting(elsewhere, follow_redirects=True), target, env=env)
    assert legacy.error == default.error and seen == []

    not_followed = run_transaction(
        _redirecting(elsewhere, follow_redirects="none", expected_response_code=302),
        target,
        env=env,
    )
    assert not_followed.ok, not_followed.error
    assert seen == []

    followed = run_transaction(_redirecting(elsewhere, follow_redirects="any"), target, env=env)
    assert followed.ok, followed.error
    ((method, path, headers, _),) = seen
    assert (method, path) == ("GET", "/collect")
    assert {k.lower() for k in headers} <= {"host", "user-agent", "accept-encoding", "accept",
                                            "connection"}  # fmt: skip
    seen.clear()

    # The seed's entrypoint "must answer below 400": a redirect out is its answer, not followed.
    entry = tx(
        entrypoint_url=f"/away?to={elsewhere}/collect", steps=[{"method": "GET", "url": "/"}]
    )
    entered = run_transaction(entry, target, env=env)
    assert entered.ok and entered.steps[0].status == 302, entered.error
    assert seen == []

    # A 307 keeps the method and body: a body holding a secret is not sent elsewhere.
    post = tx(
        steps=[
            {"method": "POST", "url": f"/away?code=307&to={elsewhere}/collect",
             "follow_redirects": "any", "payload": {"key": "{{ secret.API_KEY }}"}},
            {"method": "POST", "url": f"/away?code=307&to={elsewhere}/collect",
             "follow_redirects": "any", "payload": {"plain": 1}},
        ]
    )  # fmt: skip
    posted = run_transaction(post, target, env=env)
    assert posted.error and posted.error.endswith(
        "with the request body, which holds a secret: not sent"
    )
    assert seen == []
    plain = tx(steps=[post.steps[1].model_dump(mode="json", by_alias=True)])
    assert run_transaction(plain, target, env=env).ok
    ((method, _, headers, body),) = seen
    assert (method, body) == ("POST", b'{"plain": 1}')
    assert headers.get("Content-Type") == "application/json" and "X-Canary" not in headers


# --- 10: secrets in every form they are sent in ------------------------------------------------


def test_secrets_are_redacted_in_the_forms_a_server_echoes_them(
    two_origins: tuple[tuple[str, list[Any]], tuple[str, list[Any]]],
) -> None:
    (base, _), _ = two_origins
    echo = {"method": "POST", "url": "/echo", "payload": {"k": "{{ secret.API_KEY }}"}}
    runs = [
        tx(
            auth={"basic": {"username": "bob", "password": "{{ secret.API_KEY }}"}},
            steps=[{**echo, "response_validation": [
                {"jsonpath": "$.headers.Authorization", "eq": "nope"}]}],
        ),
        tx(steps=[{**echo, "response_validation": [{"jsonpath": "$.body", "eq": "nope"}]}]),
        tx(steps=[{**echo, "expected_response_code": 201}]),  # the body in the error's snippet
    ]  # fmt: skip
    token = base64.b64encode(f"bob:{SECRET}".encode()).decode()
    forms = [SECRET, token, token[:8], json.dumps(SECRET)[1:-1], "quoted"]
    for t in runs:
        result = run_transaction(t, Target("canary", base), env={"API_KEY": SECRET})
        dumped = json.dumps(result.to_dict(), ensure_ascii=False)
        assert not result.ok and result.error and "***" in result.error, result.error
        leaked = [f for f in forms if f in dumped or f in json.dumps(result.to_dict())]
        assert leaked == [], result.error
    assert 'found "Basic ***"' in (
        run_transaction(runs[0], Target("canary", base), env={"API_KEY": SECRET}).error or ""
    )


# --- 8: a header value that renders into something unsendable ---------------------------------


def test_a_rendered_header_value_with_a_line_break_is_not_sent(
    two_origins: tuple[tuple[str, list[Any]], tuple[str, list[Any]]],
) -> None:
    (base, seen), _ = two_origins
    t = tx(
        entrypoint_url="/ok",
        headers={"X-Api-Key": "{{ secret.API_KEY }}"},
        steps=[{"method": "GET", "url": "/ok"}],
    )
    result = run_transaction(t, Target("canary", base), env={"API_KEY": "k3y\r\nX-Evil: 1"})
    assert result.error == (
        "entrypoint (GET /ok): header X-Api-Key: header value has a line break (CR or LF) "
        "after rendering its templates"
    )
    assert "k3y" not in json.dumps(result.to_dict()) and seen == []


def test_no_log_line_quotes_a_secret_even_at_debug_level(
    two_origins: tuple[tuple[str, list[Any]], tuple[str, list[Any]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    (base, _), _ = two_origins
    t = tx(steps=[{"method": "GET", "url": "/echo?key={{ secret.API_KEY }}",
                   "expected_response_code": 201}])  # fmt: skip
    with caplog.at_level(logging.DEBUG):
        result = run_transaction(t, Target("canary", base), env={"API_KEY": "hunter2"})
    assert not result.ok
    assert "/echo?key=***" in caplog.text  # the prober's own line, redacted
    assert "hunter2" not in caplog.text
