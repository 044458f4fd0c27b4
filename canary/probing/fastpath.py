"""The probe's fast path through requests 2.32-2.34: ``ProbeSession.exchange`` and ``ProbeAdapter``.

What it replaces, and why: on a fast target most of a probe's CPU went to requests' general
machinery around one request. ``ProbeSession.exchange`` stands for ``Session.request(...,
allow_redirects=False, stream=True)``: it builds the PreparedRequest directly (in the order of
``Session.prepare_request`` / ``PreparedRequest.prepare``: method, URL, headers merged with the
session's (a None value removes a default), cookies, body and Content-Length, auth) and sends it
as ``Session.send`` does (cookie extraction, and preparing the next hop of a redirect without
following it). It keeps, per process, what requests would look up again on every request:
``merge_environment_settings`` (proxies, CA bundle, from the environment), ``get_netrc_auth``,
``prepare_url`` and ``HTTPAdapter.build_connection_pool_key_attributes``. ``ProbeAdapter``
skips re-checking CA files that were already checked for a pool (``cert_verify``) and cookie
extraction on responses without Set-Cookie (``build_response``), and its pools use the
connections of ``canary.probing.deadline``, which put each exchange under a hard deadline.

The behaviour this must match is requests' own, as of requests 2.32-2.34 on urllib3 2.x:
tests/integration/test_probe_session.py sends the same calls through ``Session.request`` and
``ProbeSession.exchange`` to a real server and compares the bytes on the wire and the outcome.
Run it after upgrading requests.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.cookies import RequestsCookieJar, extract_cookies_to_jar, merge_cookies
from requests.structures import CaseInsensitiveDict
from requests.utils import (
    check_header_validity,
    get_encoding_from_headers,
    get_netrc_auth,
    to_native_string,
)
from urllib3 import PoolManager, ProxyManager

from canary.probing import deadline

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

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _track(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if type(manager) is ProxyManager:  # SOCKS proxies bring connections of their own
            _track(manager)
        return manager

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


def _track(manager: PoolManager) -> None:
    manager.pool_classes_by_scheme = dict(deadline.POOL_CLASSES)


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
