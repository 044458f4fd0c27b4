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

from canary.probing.fastpath import ProbeAdapter, ProbeSession, forget_environment
from canary.probing.target import origin

__all__ = [
    "MAX_BODY_BYTES",
    "Failure",
    "ProbeAdapter",
    "ProbeSession",
    "Response",
    "forget_environment",
    "send",
]

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
