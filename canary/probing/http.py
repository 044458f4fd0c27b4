"""One HTTP exchange with requests: bounded in time and size, every failure turned into a value."""

from __future__ import annotations

import json
import re
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urljoin

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.cookies import RequestsCookieJar, extract_cookies_to_jar, merge_cookies
from requests.structures import CaseInsensitiveDict
from requests.utils import (
    check_header_validity,
    get_encoding_from_headers,
    get_netrc_auth,
    to_native_string,
)

from canary.probing.target import origin

MAX_BODY_BYTES = 1 << 20
MAX_REDIRECTS = 10
_CHUNK = 64 << 10
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")
# Bound of each memo below: a worker probes a handful of origins and URLs, so this is not
# reached in practice; when it is, the memo starts over rather than grow.
_MEMO_MAX = 1024
_NO_BODY_METHODS = ("GET", "HEAD")


def _site(url: str) -> str:
    """The part of an absolute URL up to its path: what proxies, netrc and TLS settings key on.

    Cheaper than parsing; URLs sharing this prefix share scheme, credentials, host and port.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = len(rest)
    for stop in "/?#":
        i = rest.find(stop)
        if 0 <= i < end:
            end = i
    return scheme.lower() + "://" + rest[:end]


def _remember(memo: dict[Any, Any], key: Any, value: Any) -> None:
    if len(memo) >= _MEMO_MAX:
        memo.clear()
    memo[key] = value


# What ProbeSessions and ProbeAdapters remember, shared by the sessions of every probe thread:
# kept per session, each origin would cost each of hundreds of threads a full look-up.
_ENV_SETTINGS: dict[tuple[Any, ...], dict[str, Any]] = {}
_NETRC_AUTH: dict[str, tuple[str, str] | None] = {}
_PREPARED_URLS: dict[str, str] = {}
_POOL_KEYS: dict[tuple[str, Any, str], Any] = {}
_UNKNOWN: Any = object()


def forget_environment() -> None:
    """Drop what probe sessions remember of the environment and files (after changing them)."""
    for memo in (_ENV_SETTINGS, _NETRC_AUTH, _PREPARED_URLS, _POOL_KEYS):
        memo.clear()


class ProbeAdapter(HTTPAdapter):
    """An HTTPAdapter that does not ask the file system the same question on every request.

    requests checks whether the CA bundle is a directory (for the pool key) and whether the CA
    bundle and client certificate exist (for each HTTPS request); each is a system call that
    also hands the GIL to another of the worker's many threads. The answers are kept, on the
    same footing as ``ProbeSession``'s environment: files a worker was started with stay put.
    A missing file is never remembered, so it still fails every request that needs it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._verified: weakref.WeakKeyDictionary[Any, tuple[bool, Any, Any]] = (
            weakref.WeakKeyDictionary()
        )

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> Any:
        key = (_site(str(request.url)), verify, repr(cert))
        found = _POOL_KEYS.get(key)
        if found is None:
            found = super().build_connection_pool_key_attributes(request, verify, cert)
            _remember(_POOL_KEYS, key, found)
        host_params, pool_kwargs = found
        return dict(host_params), dict(pool_kwargs)

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: Any,
        proxies: Mapping[str, str] | None = None,
        cert: Any = None,
    ) -> Any:
        if proxies:
            return super().get_connection_with_tls_context(request, verify, proxies, cert)
        # Without proxies requests only looks one up, to find none.
        try:
            host_params, pool_kwargs = self.build_connection_pool_key_attributes(
                request, verify, cert
            )
        except ValueError as exc:
            raise requests.exceptions.InvalidURL(exc, request=request) from exc
        return self.poolmanager.connection_from_host(**host_params, pool_kwargs=pool_kwargs)

    def request_url(self, request: requests.PreparedRequest, proxies: Any) -> str:
        if proxies:
            return super().request_url(request, proxies)
        return request.path_url

    def build_response(self, req: requests.PreparedRequest, resp: Any) -> requests.Response:
        if "set-cookie" in resp.headers or "set-cookie2" in resp.headers:
            return super().build_response(req, resp)
        # The same Response, minus extracting cookies from a response that sets none: that
        # runs the whole cookielib machinery to find nothing.
        response = requests.Response()
        response.status_code = resp.status
        response.headers = CaseInsensitiveDict(resp.headers)
        response.encoding = get_encoding_from_headers(response.headers)
        response.raw = resp
        response.reason = resp.reason
        response.url = str(req.url)
        response.request = req
        response.connection = self
        return response

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # What this sets on the pool depends only on these three; a pool that already had
        # them set with the same answers needs no second look at the files.
        settings = (url[:5].lower() == "https", verify, repr(cert))
        try:
            if self._verified.get(conn) == settings:
                return
        except TypeError:  # a pool that cannot be weakly referenced: check every time
            return super().cert_verify(conn, url, verify, cert)
        super().cert_verify(conn, url, verify, cert)
        self._verified[conn] = settings


class ProbeSession(requests.Session):
    """A Session for probes: ``exchange`` is ``request`` minus the general-purpose overhead.

    On a fast target most of a probe's CPU time went to requests preparing each request:
    merging session settings through runtime protocol checks, re-reading proxy, CA and netrc
    settings from the environment and disk, copying an empty cookie jar, parsing the same URL.
    ``exchange`` builds the same PreparedRequest directly, reuses what cannot change while a
    worker runs (environment settings and netrc answers per origin, prepared URLs; shared by
    all the sessions of the process, see ``forget_environment``), and sends it through the
    session's adapter as ``Session.send`` would. The fleet's probe threads use one each; so
    does ``run_transaction`` when not given a session.
    """

    def __init__(self) -> None:
        super().__init__()
        self.mount("https://", ProbeAdapter())
        self.mount("http://", ProbeAdapter())

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        # requests re-reads these from the environment for every request; the environment of
        # a worker does not change while it runs, so the answer is kept per origin (and per
        # the session's own settings, which it is merged with).
        if proxies or not self.trust_env:
            return dict(super().merge_environment_settings(url, proxies, stream, verify, cert))
        own = (repr(self.proxies), repr(self.stream), repr(self.verify), repr(self.cert))
        key = (_site(str(url)), stream, verify, repr(cert), *own)
        cached = _ENV_SETTINGS.get(key)
        if cached is None:
            cached = dict(super().merge_environment_settings(url, proxies, stream, verify, cert))
            _remember(_ENV_SETTINGS, key, cached)
        return {**cached, "proxies": dict(cached.get("proxies") or {})}

    def _netrc_auth(self, url: str) -> tuple[str, str] | None:
        key = _site(url)
        # One look-up, not "in" then "[]": another thread may empty the memo in between.
        found = _NETRC_AUTH.get(key, _UNKNOWN)
        if found is _UNKNOWN:
            found = get_netrc_auth(url)
            _remember(_NETRC_AUTH, key, found)
        return found

    def _prepared_url(self, url: str) -> str:
        prepared = _PREPARED_URLS.get(url)
        if prepared is None:
            scratch = requests.PreparedRequest()
            scratch.prepare_url(url, None)
            prepared = str(scratch.url)
            _remember(_PREPARED_URLS, url, prepared)
        return prepared

    def exchange(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        body: bytes | None,
        auth: tuple[str, str] | None,
        timeout: tuple[float, float],
        verify: bool,
    ) -> requests.Response:
        """``request(method, url, ..., allow_redirects=False, stream=True)``, for less CPU.

        Session-wide auth, params or hooks take the ordinary path, which knows what to do
        with them.
        """
        if self.auth is not None or self.params or any(self.hooks.values()):
            return self.request(
                method,
                url,
                headers=headers,
                data=body,
                auth=auth,
                timeout=timeout,
                allow_redirects=False,
                stream=True,
                verify=verify,
            )
        # Same steps in the same order as Session.request, so the same errors come out.
        if auth is None and self.trust_env:
            auth = self._netrc_auth(url)
        req = requests.PreparedRequest()
        req.method = method.upper()
        req.url = self._prepared_url(url)
        merged: dict[Any, tuple[Any, Any]] = {}
        for source in (self.headers, headers):
            for name, value in source.items():
                merged[name.lower()] = (name, value)
        req.headers = CaseInsensitiveDict()
        for name, value in merged.values():
            if value is not None:  # a None header value removes a session default
                check_header_validity((name, value))
                req.headers[to_native_string(name)] = value
        sent_cookies = len(self.cookies) > 0
        if sent_cookies:
            # A copy, as requests makes: sending must not expire cookies in the run's own jar.
            req.prepare_cookies(merge_cookies(RequestsCookieJar(), self.cookies))
        if body:
            req.body = body
            req.headers["Content-Length"] = str(len(body))
        elif req.method not in _NO_BODY_METHODS and req.headers.get("Content-Length") is None:
            req.headers["Content-Length"] = "0"
        if auth is not None or "@" in req.url:
            req.prepare_auth(auth)
        settings = self.merge_environment_settings(req.url, {}, True, verify, None)
        kwargs: dict[str, Any] = {"timeout": timeout, **settings}
        resp = self.get_adapter(url=req.url).send(req, **kwargs)
        # Without these headers extracting finds nothing, after a good deal of work.
        raw_headers = getattr(resp.raw, "headers", None)  # another adapter's raw may have none
        if raw_headers is None or "set-cookie" in raw_headers or "set-cookie2" in raw_headers:
            extract_cookies_to_jar(self.cookies, req, resp.raw)
        if resp.is_redirect:
            # Session.send prepares the next hop even when not following it, which reads the
            # redirect's body to the end (so its connection can be reused) and rejects an
            # unusable Location: keep both.
            if not sent_cookies:
                req.prepare_cookies(RequestsCookieJar())
            next(self.resolve_redirects(resp, req, yield_requests=True, **kwargs), None)
        return resp


@dataclass
class Response:
    """What came back, with the body read up to ``MAX_BODY_BYTES``."""

    status: int
    headers: CaseInsensitiveDict[str]
    body: bytes
    truncated: bool
    elapsed_ms: float
    url: str
    cookies: dict[str, str] = field(default_factory=dict)
    encoding: str | None = None
    _json: tuple[bool, Any, str] | None = None
    _text: str | None = None

    @property
    def text(self) -> str:
        if self._text is None:
            try:
                self._text = self.body.decode(self.encoding or "utf-8", errors="replace")
            except LookupError:  # a charset Python does not know
                self._text = self.body.decode("utf-8", errors="replace")
        return self._text

    def json(self) -> tuple[bool, Any, str]:
        """(ok, value, reason): the body as JSON, or why it is not JSON."""
        if self._json is None:
            self._json = _decode_json(self.body, self.truncated)
        return self._json


def _decode_json(body: bytes, truncated: bool) -> tuple[bool, Any, str]:
    cut = f" (body truncated at {MAX_BODY_BYTES} bytes)" if truncated else ""
    if not body.strip():
        return False, None, f"body is empty, not JSON{cut}"
    try:
        return True, json.loads(body), ""
    except RecursionError:
        return False, None, "body is JSON nested too deeply to read"
    except (ValueError, UnicodeDecodeError) as exc:
        return False, None, f"body is not JSON ({exc}){cut}"


@dataclass
class Failure:
    """No usable response: kind is 'connect_error', 'timeout' or 'error'."""

    kind: Literal["connect_error", "timeout", "error"]
    message: str
    elapsed_ms: float


def send(
    session: requests.Session,
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    body: bytes | None,
    params: list[tuple[str, str]],
    auth: tuple[str, str] | None,
    timeout: float,
    allow_redirects: bool,
    rewrite: Callable[[str], str] | None = None,
    verify: bool = True,
    max_body: int = MAX_BODY_BYTES,
) -> Response | Failure:
    """Send one request; never raises for anything the server or the network does.

    Redirects are followed here, not by requests, so that ``rewrite`` can re-point each
    ``Location`` at the target: a canary redirecting to its public host must not send the probe
    to production. Credentials are dropped when a redirect leaves the origin.
    """
    start = time.perf_counter()
    deadline = start + timeout

    def ms() -> float:
        return (time.perf_counter() - start) * 1000

    hops = 0
    while True:
        left = max(deadline - time.perf_counter(), 0.001)
        try:
            if isinstance(session, ProbeSession) and not params:
                resp = session.exchange(
                    method,
                    url,
                    headers=headers,
                    body=body,
                    auth=auth,
                    timeout=(left, left),
                    verify=verify,
                )
            else:
                resp = session.request(
                    method,
                    url,
                    headers=headers,
                    data=body,
                    params=params or None,
                    auth=auth,
                    timeout=(left, left),
                    allow_redirects=False,
                    stream=True,
                    verify=verify,
                )
        except requests.exceptions.ConnectTimeout:
            return Failure("timeout", f"no connection within {timeout:g}s", ms())
        except requests.exceptions.Timeout:
            return Failure("timeout", f"no response within {timeout:g}s", ms())
        except requests.exceptions.SSLError as exc:
            return Failure("connect_error", f"TLS error: {_summary(exc)}", ms())
        except requests.exceptions.ConnectionError as exc:
            kind: Literal["connect_error", "timeout"] = (
                "timeout" if "timed out" in str(exc) else "connect_error"
            )
            return Failure(kind, f"cannot connect: {_summary(exc)}", ms())
        except Exception as exc:  # invalid URL, bad header value: the request's own fault
            return Failure("error", f"request failed: {_summary(exc)}", ms())
        if not (allow_redirects and resp.is_redirect):
            break
        resp.close()
        hops += 1
        if hops > MAX_REDIRECTS:
            return Failure("error", f"more than {MAX_REDIRECTS} redirects", ms())
        nxt = urljoin(resp.url, resp.headers.get("Location", ""))
        nxt = rewrite(nxt) if rewrite else nxt
        if resp.status_code == 303 or (resp.status_code in (301, 302) and method == "POST"):
            method, body = ("HEAD" if method == "HEAD" else "GET"), None
            headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        if origin(nxt) != origin(resp.url):
            auth = None
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        url, params = nxt, []
    try:
        chunks: list[bytes] = []
        size = 0
        truncated = False
        if method != "HEAD":
            raw = resp.raw
            # Nothing is held back for decoding when the body is not encoded, so once the
            # announced length has arrived the read that would return b"" can be skipped.
            plain = "content-encoding" not in raw.headers
            # read1 returns whatever has arrived, so a server dripping bytes meets the deadline.
            while chunk := raw.read1(_CHUNK, decode_content=True):
                chunks.append(chunk)
                size += len(chunk)
                if size > max_body:
                    truncated = True
                    break
                if time.perf_counter() > deadline:
                    return Failure("timeout", f"body not complete within {timeout:g}s", ms())
                if plain and raw.length_remaining == 0:
                    break
        body_bytes = b"".join(chunks)[:max_body]
        return Response(
            status=resp.status_code,
            headers=resp.headers,
            body=body_bytes,
            truncated=truncated,
            elapsed_ms=ms(),
            url=resp.url,
            cookies=_cookies(resp),
            encoding=resp.encoding
            if resp.encoding and resp.encoding.lower() != "iso-8859-1"
            else None,
        )
    except (requests.exceptions.ConnectionError, urllib3.exceptions.HTTPError) as exc:
        if isinstance(exc, urllib3.exceptions.ReadTimeoutError) or "timed out" in str(exc):
            return Failure("timeout", f"body not complete within {timeout:g}s", ms())
        if isinstance(exc, urllib3.exceptions.DecodeError):
            return Failure("error", f"cannot decode the body: {_summary(exc)}", ms())
        msg = f"connection broken while reading the body: {_summary(exc)}"
        return Failure("connect_error", msg, ms())
    except Exception as exc:  # chunked-encoding and decompression errors from a broken server
        return Failure("error", f"cannot read the body: {_summary(exc)}", ms())
    finally:
        resp.close()


def _cookies(resp: requests.Response) -> dict[str, str]:
    out: dict[str, str] = {}
    for c in resp.cookies:
        if c.value is not None:
            out[c.name] = c.value
    return out


def _summary(exc: BaseException) -> str:
    text = str(exc)
    m = _ERRNO.search(text)
    if m:
        return m.group(1).strip().lower()
    for hint in (
        "Name or service not known",
        "nodename nor servname",
        "Temporary failure in name resolution",
    ):
        if hint in text:
            return "host name does not resolve"
    if "RemoteDisconnected" in text or "Connection aborted" in text:
        return "the server closed the connection without answering"
    text = text or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "…"
