"""Where a transaction runs: the target version's base URL, and how definition URLs map onto it."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import urljoin, urlsplit, urlunsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass
class Target:
    """One version to probe; ``headers`` go on every request (header-routed canaries)."""

    version: str
    base_url: str
    headers: dict[str, str] = field(default_factory=dict)


# Both are pure and see the same few URLs over and over (every run of every transaction), so
# their answers are kept rather than parsed again.
@lru_cache(maxsize=4096)
def origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an absolute URL, ports made explicit; None for a relative one."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    scheme = parts.scheme.lower()
    return (scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme, 0))


@lru_cache(maxsize=4096)
def resolve(url: str, base_url: str, entry_origin: tuple[str, str, int] | None) -> str:
    """The URL to request for ``url`` against the target at ``base_url``.

    Relative URLs resolve against the base URL, taken as a directory (so ``api/x`` against
    ``http://lb/canary`` is ``http://lb/canary/api/x``; ``/api/x`` is ``http://lb/api/x``).
    Absolute URLs on the entrypoint's origin are re-pointed at the target; others are kept.
    """
    base = base_url if base_url.endswith("/") else base_url + "/"
    own = origin(url)
    if own is None:
        return urljoin(base, url)
    if entry_origin is not None and own == entry_origin:
        parts = urlsplit(url)
        return urljoin(base, urlunsplit(("", "", parts.path or "/", parts.query, parts.fragment)))
    return url
