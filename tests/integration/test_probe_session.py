"""fastpath.ProbeSession.exchange against Session.request: the same bytes on the wire, the same outcome."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from canary.probing.fastpath import ProbeSession, forget_environment

pytestmark = pytest.mark.integration

Seen = tuple[str, list[tuple[str, str]], bytes]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[Seen]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def date_time_string(self, timestamp: float | None = None) -> str:
        return "Thu, 01 Jan 2026 00:00:00 GMT"  # two calls may straddle a second

    def _any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.seen.append((self.requestline, list(self.headers.items()), body))
        path = self.path.split("?")[0]
        headers: list[tuple[str, str]] = [("Content-Type", "text/plain; charset=utf-8")]
        status, reply = 200, b"plain"
        if path == "/cookies":
            headers += [("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Path=/cookies")]
        elif path == "/expire":
            headers += [("Set-Cookie", "sid=; Path=/; Max-Age=0")]
        elif path == "/redirect":
            status, reply = 302, b"moved, and a body to skip"
            headers += [("Location", "/plain")]
        elif path == "/bad-location":
            status, reply = 302, b""
            headers += [("Location", "http://[unclosed/")]
        elif path == "/gzip":
            headers += [("Content-Encoding", "identity")]
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _any


@pytest.fixture
def server() -> Iterator[tuple[str, list[Seen]]]:
    seen: list[Seen] = []
    handler = type("Handler", (_Handler,), {"seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def _outcome(
    session: requests.Session, call: Callable[[requests.Session], requests.Response]
) -> tuple[Any, ...]:
    try:
        resp = call(session)
    except Exception as exc:
        return ("raised", type(exc), str(exc))
    content = resp.content
    return (
        resp.status_code,
        dict(resp.headers.lower_items()),
        resp.url,
        resp.encoding,
        resp.is_redirect,
        content,
        sorted((c.name, c.value) for c in resp.cookies),
        sorted((c.name, c.value, c.domain, c.path) for c in session.cookies),
    )


def _both(
    base: str,
    seen: list[Seen],
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    auth: tuple[str, str] | None = None,
    setup: Callable[[requests.Session], None] = lambda s: None,
    repeat: int = 1,
) -> None:
    """The same call through both paths; what the server saw and what came back must match."""
    url = path if "://" in path or not path.startswith("/") else base + path
    outcomes, logs = [], []
    for session in (requests.Session(), ProbeSession()):
        with session:
            setup(session)
            seen.clear()
            for _ in range(repeat):  # again, so the second pass runs on warm caches
                if isinstance(session, ProbeSession):
                    outcome = _outcome(
                        session,
                        lambda s: s.exchange(  # type: ignore[attr-defined]
                            method,
                            url,
                            headers=dict(headers or {}),
                            body=body,
                            auth=auth,
                            timeout=(5.0, 5.0),
                            verify=True,
                        ),
                    )
                else:
                    outcome = _outcome(
                        session,
                        lambda s: s.request(
                            method,
                            url,
                            headers=dict(headers or {}),
                            data=body,
                            auth=auth,
                            timeout=(5.0, 5.0),
                            allow_redirects=False,
                            stream=True,
                            verify=True,
                        ),
                    )
            outcomes.append(outcome)
            logs.append(list(seen))
    assert outcomes[1] == outcomes[0]
    assert logs[1] == logs[0]


@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE", "OPTIONS", "post", "PUT", "PATCH"])
@pytest.mark.parametrize("body", [None, b"", b'{"a": 1}'])
def test_methods_and_bodies(
    server: tuple[str, list[Seen]], method: str, body: bytes | None
) -> None:
    _both(*server, method, "/plain", body=body, headers={"User-Agent": "canary-probe/1"}, repeat=2)


@pytest.mark.parametrize(
    "headers",
    [
        {"accept": "application/json", "user-agent": "x", "X-Canary": "canary"},
        {"Content-Type": "application/json", "Content-Length": "999"},
        {"Authorization": "Bearer t0k", "Cookie": "mine=1"},
        {"X-Bad": "a\r\nb"},
        {"X-Bad": " leading space"},
        {"Bad Name": "x"},
    ],
)
def test_headers_merge_with_the_session_defaults(
    server: tuple[str, list[Seen]], headers: dict[str, str]
) -> None:
    _both(*server, "POST", "/plain", headers=headers, body=b"x")


def test_a_session_default_set_to_none_is_not_sent(server: tuple[str, list[Seen]]) -> None:
    def setup(s: requests.Session) -> None:
        s.headers["Accept-Encoding"] = None  # type: ignore[assignment]
        s.headers["X-Session"] = "yes"

    _both(*server, "GET", "/plain", setup=setup)


@pytest.fixture
def forgetful() -> Iterator[None]:
    forget_environment()
    yield
    forget_environment()  # what the sessions learnt here is not the environment of other tests


def test_credentials_from_auth_the_url_and_netrc(
    server: tuple[str, list[Seen]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forgetful: None
) -> None:
    base, seen = server
    _both(base, seen, "GET", "/plain", auth=("user", "pa:ss"))
    _both(base, seen, "GET", base.replace("http://", "http://u%40x:p%20w@") + "/plain")
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login robot password s3cret\n")
    monkeypatch.setenv("NETRC", str(netrc))
    forget_environment()
    _both(base, seen, "GET", "/plain", repeat=2)
    _both(base, seen, "GET", "/plain", auth=("explicit", "wins"))


def test_cookies_sent_received_and_expired(server: tuple[str, list[Seen]]) -> None:
    base, seen = server

    def jar(s: requests.Session) -> None:
        s.cookies.set("sid", "1", domain="127.0.0.1", path="/")
        s.cookies.set("other", "2", domain="elsewhere.example", path="/")

    _both(base, seen, "GET", "/cookies", repeat=2)
    _both(base, seen, "GET", "/cookies", setup=jar)
    _both(base, seen, "GET", "/plain", setup=jar, headers={"Cookie": "explicit=1"})
    _both(base, seen, "GET", "/expire", setup=jar)


def test_redirects_are_not_followed_but_prepared_as_requests_does(
    server: tuple[str, list[Seen]],
) -> None:
    base, seen = server
    _both(base, seen, "POST", "/redirect", body=b"x", repeat=2)
    _both(base, seen, "GET", "/bad-location")
    _both(base, seen, "GET", "/gzip")


@pytest.mark.parametrize(
    "url",
    [
        "/plain?q=a b&x=ü#frag",
        "/pl%41in?%zz",
        "/",
        "http://",
        "127.0.0.1/x",
        "ftp://x/",
        "http://[::1",
    ],
)
def test_urls_are_prepared_and_refused_alike(server: tuple[str, list[Seen]], url: str) -> None:
    _both(*server, "GET", url, repeat=2)


def test_session_wide_auth_and_hooks_take_the_ordinary_path(
    server: tuple[str, list[Seen]],
) -> None:
    calls: list[int] = []

    def setup(s: requests.Session) -> None:
        s.auth = ("session", "wide")
        s.hooks["response"].append(lambda r, **kw: calls.append(r.status_code))

    _both(*server, "GET", "/plain", setup=setup)
    assert calls == [200, 200]
