"""The one outbound HTTP client: JSON, timeouts, retries with backoff, no secret in any message.

Shared by the HTTP alert channels, the webhook router and the gate's callers. It uses urllib rather than requests on
purpose: urllib3 logs request paths at DEBUG level, and a Slack webhook's path is its secret.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import AfterValidator

from canary.errors import CanaryError, ConfigError

log = logging.getLogger(__name__)

MASK = "***"
_MAX_BODY = 300
# Statuses worth another try: the receiver is overloaded or briefly down, not refusing us.
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class Redactor:
    """Replaces every known secret in a text with ``***`` (longest first, so parts never leak)."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets: list[str] = []
        self.add(*secrets)

    def add(self, *secrets: str | None) -> None:
        # Very short values would mask ordinary words and say nothing about the secret anyway.
        fresh = {s for s in secrets if s and len(s) >= 4}
        self._secrets = sorted(set(self._secrets) | fresh, key=len, reverse=True)

    def add_url(self, url: str, *, path_is_secret: bool = True) -> None:
        """Treat a URL's query and credentials, and its path unless told otherwise, as secret."""
        parts = urlsplit(url)
        self.add(parts.query, parts.password, *(value for _, value in parse_qsl(parts.query)))
        if path_is_secret:
            path_query = parts.path + (f"?{parts.query}" if parts.query else "")
            self.add(url, path_query)
            if len(parts.path) > 1:
                self.add(parts.path, parts.path.rstrip("/"))

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text


def safe_url(url: str, *, path_is_secret: bool = True) -> str:
    """The part of a URL that may be shown: scheme, host, port (and the path if not secret)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    if path_is_secret:
        path = "/" + (MASK if len(parts.path) > 1 or parts.query else "")
    else:
        path = (parts.path or "/") + (f"?{MASK}" if parts.query else "")
    return f"{parts.scheme}://{host}{port}{path}"


def secret_from_env(variable: str | None, what: str) -> str | None:
    """The value of environment variable ``variable`` (None when no variable is named).

    Secrets come from the environment so that rollout files can be committed; a variable that is
    named but unset is a configuration error, caught when the channel or router is built.
    """
    if not variable:
        return None
    value = os.environ.get(variable)
    if not value:
        raise ConfigError(f"{what}: environment variable {variable} is not set or empty")
    return value


def check_http_url(url: str) -> str:
    """``url`` when it is an http(s) URL with a host; ValueError (that does not echo it) if not."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # The URL itself may be the secret (Slack): say what is wrong without echoing it.
        raise ValueError("must be an http(s) URL with a host")
    return url


HttpURL = Annotated[str, AfterValidator(check_http_url)]
"""An option holding an http(s) URL, checked when the options are."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


@dataclass
class HttpClient:
    """Sends JSON to one URL. Errors are ``error`` instances whose text holds no secret."""

    url: str
    what: str
    error: type[CanaryError]
    timeout: float = 5.0
    retries: int = 2
    backoff: float = 0.5
    headers: dict[str, str] = field(default_factory=dict)
    secret_headers: dict[str, str] = field(default_factory=dict)
    redact: Redactor = field(default_factory=Redactor)
    # Slack-style URLs carry their credential in the path; an Alertmanager URL does not.
    path_is_secret: bool = True

    def __post_init__(self) -> None:
        try:
            check_http_url(self.url)
        except ValueError as exc:
            raise ConfigError(f"{self.what}: url {exc}") from None
        if self.timeout <= 0 or self.retries < 0 or self.backoff < 0:
            raise ConfigError(f"{self.what}: timeout must be > 0, retries and backoff >= 0")
        self.redact.add_url(self.url, path_is_secret=self.path_is_secret)
        self.redact.add(*self.secret_headers.values())

    def request(
        self,
        payload: Any = None,
        *,
        method: str = "POST",
        url: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """Send ``payload`` as JSON (no body when None); retried on network errors and 5xx/429.

        Returns the first 2xx response; raises ``error`` after the last attempt or on another 4xx.
        """
        target = url or self.url
        if url is not None:
            self.redact.add_url(url, path_is_secret=self.path_is_secret)
        data = None if payload is None else json.dumps(payload, default=str).encode("utf-8")
        sent = {"Accept": "application/json", "User-Agent": "canary", **self.headers}
        sent.update(headers or {})
        if data is not None:
            sent["Content-Type"] = "application/json"
        sent.update(self.secret_headers)
        attempts = self.retries + 1
        problem = ""
        for attempt in range(1, attempts + 1):
            retry_after: float | None = None
            req = urllib.request.Request(target, data=data, headers=sent, method=method)
            try:
                with _opener.open(req, timeout=self.timeout) as resp:
                    return Response(resp.status, resp.read(1 << 20))
            except urllib.error.HTTPError as exc:
                body = _read_body(exc)
                problem = f"HTTP {exc.code}" + (f": {body}" if body else "")
                if exc.code not in _RETRY_STATUSES:
                    break
                retry_after = _retry_after(exc.headers.get("Retry-After"))
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
                problem = f"{type(reason).__name__}: {reason}" if str(reason) else repr(reason)
            if attempt < attempts:
                delay = self.backoff * 2 ** (attempt - 1)
                if retry_after is not None:
                    delay = min(max(delay, retry_after), 30.0)
                log.info(
                    "%s: attempt %d/%d to %s failed (%s); retrying in %.2g s",
                    self.what,
                    attempt,
                    attempts,
                    self.safe(target),
                    self.redact(problem),
                    delay,
                )
                time.sleep(delay)
        raise self.error(
            self.redact(
                f"{self.what}: {method} {self.safe(target)} failed after {attempt} "
                f"attempt{'s' if attempt > 1 else ''}: {problem}"
            )
        )

    def safe(self, url: str) -> str:
        return safe_url(url, path_is_secret=self.path_is_secret)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # Following a redirect would resend the secret header to wherever the receiver points us.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def _read_body(exc: urllib.error.HTTPError) -> str:
    try:
        raw = exc.read(_MAX_BODY + 1)
    except Exception:
        return ""
    text = raw.decode("utf-8", "replace").strip().replace("\n", " ")
    return text[:_MAX_BODY] + ("…" if len(text) > _MAX_BODY else "")


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
