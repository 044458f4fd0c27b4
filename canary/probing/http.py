"""One HTTP exchange with requests: bounded in time and size, every failure turned into a value."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urljoin

import requests
import urllib3
from requests.structures import CaseInsensitiveDict

from canary.probing import deadline
from canary.probing.fastpath import ProbeAdapter, ProbeSession, forget_environment
from canary.probing.redact import quiet_libraries_in_probes
from canary.probing.target import origin
from canary.transactions.models import RedirectPolicyName

__all__ = [
    "MAX_BODY_BYTES",
    "Failure",
    "ProbeAdapter",
    "ProbeSession",
    "Response",
    "forget_environment",
    "send",
]

quiet_libraries_in_probes(lambda: deadline.current() is not None)
MAX_BODY_BYTES = 1 << 20
MAX_REDIRECTS = 10
_CHUNK = 64 << 10
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


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
    # The try that failed on a reused connection before this one (see ``send``).
    resent: Failure | None = None
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
    # The try that failed on a reused connection before this one (see ``send``).
    resent: Failure | None = None
    status: int | None = None  # when a response was refused (a redirect not to follow)


# The policies of follow_redirects, and the entrypoint's: it follows redirects on its origin,
# and one to another origin is its answer (a 3xx: below 400, as the entrypoint must answer).
Redirects = RedirectPolicyName | Literal["stay"]
# What a request still carries after a redirect to another origin (under follow_redirects: any).
_CROSS_ORIGIN_HEADERS = ("user-agent", "content-type")
_STALLED = {
    deadline.DNS: "no DNS answer within {}s",
    deadline.CONNECT: "no connection within {}s",
    deadline.TLS: "no TLS handshake within {}s",
    deadline.REQUEST: "request not sent within {}s",
    deadline.STATUS: "no status line within {}s",
    deadline.HEADERS: "headers not complete within {}s",
    deadline.BODY: "body not complete within {}s",
}


def _stalled(ex: deadline.Exchange, timeout: float, untracked: str) -> Failure:
    """The timeout failure of ``ex``, naming the part of the exchange that did not finish."""
    if ex.tracked:
        message = _STALLED[ex.stalled or ex.phase].format(f"{timeout:g}")
    else:  # a session whose connections do not report their progress
        message = untracked.format(f"{timeout:g}")
    return Failure("timeout", message, 0.0)


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
    redirects: Redirects = "same-origin",
    secret_body: bool = False,
    rewrite: Callable[[str], str] | None = None,
    verify: bool = True,
    max_body: int = MAX_BODY_BYTES,
) -> Response | Failure:
    """Send one request; never raises for anything the server or the network does.

    ``timeout`` is a hard deadline over the whole exchange, redirects included: with a
    ``ProbeSession`` (the fleet's, and ``run_transaction``'s own) a server that drips bytes
    is cut off when it passes (see ``deadline``), and the failure names what was not done.

    A request that fails on a reused keep-alive connection before any byte of the answer
    arrived went to a server that had already closed that connection; it is sent once more on
    a new connection (as browsers do), and the failed try comes back in ``resent``.

    Redirects are followed here, not by requests, so that ``rewrite`` can re-point each
    ``Location`` at the target: a canary redirecting to its public host must not send the probe
    to production. ``redirects`` says which to follow: ``same-origin`` (a redirect elsewhere is
    a failure naming where it pointed), ``any`` (leaving the origin drops every header and
    credential; a body is re-sent only when ``secret_body`` is false), ``none``, or ``stay``
    (the entrypoint's: a redirect to another origin is the answer).
    """
    start = time.perf_counter()
    with deadline.bounded(timeout) as ex:
        hops = 0
        resent: Failure | None = None

        def failed(failure: Failure) -> Failure:
            failure.resent = resent
            failure.elapsed_ms = (time.perf_counter() - start) * 1000
            return failure

        while True:
            left = max(ex.deadline - time.monotonic(), 0.001)
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
                return failed(Failure("timeout", f"no connection within {timeout:g}s", 0.0))
            except requests.exceptions.Timeout:
                return failed(_stalled(ex, timeout, "no response within {}s"))
            except requests.exceptions.ConnectionError as exc:  # SSLError included
                if ex.expired:
                    return failed(_stalled(ex, timeout, "no response within {}s"))
                if ex.reused and not ex.answered and resent is None:
                    # A TLS connection the server closed often ends in an SSL EOF error.
                    ms = (time.perf_counter() - start) * 1000
                    why = f"{_summary(exc)} (a reused connection; sent again on a new one)"
                    resent = Failure("connect_error", why, ms)
                    start = time.perf_counter()
                    ex.fresh = True
                    continue
                if isinstance(exc, requests.exceptions.SSLError):
                    return failed(Failure("connect_error", f"TLS error: {_summary(exc)}", 0.0))
                kind: Literal["connect_error", "timeout"] = (
                    "timeout" if "timed out" in str(exc) else "connect_error"
                )
                return failed(Failure(kind, f"cannot connect: {_summary(exc)}", 0.0))
            except Exception as exc:  # invalid URL, bad header value: the request's own fault
                if ex.expired:
                    return failed(_stalled(ex, timeout, "no response within {}s"))
                return failed(Failure("error", f"request failed: {_summary(exc)}", 0.0))
            ex.fresh = False
            if ex.expired:  # the socket was shut down while the headers were being read
                resp.close()
                return failed(_stalled(ex, timeout, "no response within {}s"))
            if redirects == "none" or not resp.is_redirect:
                break
            status = resp.status_code
            nxt = urljoin(resp.url, resp.headers.get("Location", ""))
            nxt = rewrite(nxt) if rewrite else nxt
            if redirects == "stay" and origin(nxt) != origin(resp.url):
                break  # the redirect out is the answer
            resp.close()
            hops += 1
            if hops > MAX_REDIRECTS:
                return failed(Failure("error", f"more than {MAX_REDIRECTS} redirects", 0.0))
            if status == 303 or (status in (301, 302) and method == "POST"):
                method, body = ("HEAD" if method == "HEAD" else "GET"), None
                headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
            if origin(nxt) != origin(resp.url):
                if redirects == "same-origin":
                    why = (
                        f"status {status} redirects to another origin ({nxt}); follow_redirects is "
                        "same-origin (any would follow it, sending nothing from the definition)"
                    )
                    return failed(Failure("error", why, 0.0, status=status))
                if body and secret_body:
                    why = (
                        f"status {status} redirects to another origin ({nxt}) with the request "
                        "body, which holds a secret: not sent"
                    )
                    return failed(Failure("error", why, 0.0, status=status))
                # Leaving the origin: nothing from the definition or the target goes along
                # (headers, cookies written as headers, credentials); the jar's cookies follow
                # their own domain rules.
                auth = None
                headers = {k: v for k, v in headers.items() if k.lower() in _CROSS_ORIGIN_HEADERS}
                if not body:
                    headers.pop("Content-Type", None)
            url, params = nxt, []
        outcome = _read(ex, resp, method, timeout, max_body)
        if isinstance(outcome, Failure):
            return failed(outcome)
        outcome.resent = resent
        # The failed try (if any) has its own time: this is the time of the last one.
        outcome.elapsed_ms = (time.perf_counter() - start) * 1000
        return outcome


def _read(
    ex: deadline.Exchange, resp: requests.Response, method: str, timeout: float, max_body: int
) -> Response | Failure:
    """The body of ``resp``, up to ``max_body`` bytes, before the exchange's deadline."""
    try:
        chunks: list[bytes] = []
        size = 0
        truncated = False
        if method != "HEAD":
            raw = resp.raw
            # Nothing is held back for decoding when the body is not encoded, so once the
            # announced length has arrived the read that would return b"" can be skipped.
            plain = "content-encoding" not in raw.headers
            # read1 returns whatever has arrived; the deadline ends a read that waits too long.
            while chunk := raw.read1(_CHUNK, decode_content=True):
                chunks.append(chunk)
                size += len(chunk)
                if size > max_body:
                    truncated = True
                    break
                if time.monotonic() > ex.deadline:
                    ex.expire()
                    break
                if plain and raw.length_remaining == 0:
                    break
        if ex.expired:
            return _stalled(ex, timeout, "body not complete within {}s")
        body_bytes = b"".join(chunks)[:max_body]
        return Response(
            status=resp.status_code,
            headers=resp.headers,
            body=body_bytes,
            truncated=truncated,
            elapsed_ms=0.0,
            url=resp.url,
            cookies=_cookies(resp),
            encoding=resp.encoding
            if resp.encoding and resp.encoding.lower() != "iso-8859-1"
            else None,
        )
    except (requests.exceptions.ConnectionError, urllib3.exceptions.HTTPError) as exc:
        if (
            ex.expired
            or isinstance(exc, urllib3.exceptions.ReadTimeoutError)
            or "timed out" in str(exc)
        ):
            return _stalled(ex, timeout, "body not complete within {}s")
        if isinstance(exc, urllib3.exceptions.DecodeError):
            return Failure("error", f"cannot decode the body: {_summary(exc)}", 0.0)
        msg = f"connection broken while reading the body: {_summary(exc)}"
        return Failure("connect_error", msg, 0.0)
    except Exception as exc:  # chunked-encoding and decompression errors from a broken server
        if ex.expired:
            return _stalled(ex, timeout, "body not complete within {}s")
        return Failure("error", f"cannot read the body: {_summary(exc)}", 0.0)
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
