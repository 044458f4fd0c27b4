"""Runtime settings read once from the environment (CANARY_* variables)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit, urlunsplit

from canary.errors import ConfigError

REDIS_SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True, slots=True)
class Settings:
    """What a canary process needs to know about its surroundings."""

    redis_url: str | None
    key_prefix: str
    probe_queue_prefix: str
    control_queue: str
    log_level: str


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def check_redis_url(url: str, source: str = "CANARY_REDIS_URL") -> str:
    """``url`` if redis-py can connect with it, else ConfigError naming ``source`` (no secrets)."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # ValueError when not a number or out of range
    except ValueError as exc:
        raise ConfigError(f"{source}: not a valid Redis URL ({exc})") from None
    if parts.scheme not in REDIS_SCHEMES:
        raise ConfigError(
            f"{source}: not a valid Redis URL "
            f"({f'scheme {parts.scheme!r}' if parts.scheme else 'no scheme'}; "
            f"expected {', '.join(s + '://' for s in REDIS_SCHEMES)}), e.g. redis://127.0.0.1:6379/0"
        )
    if parts.scheme == "unix" and not parts.path:
        raise ConfigError(f"{source}: a unix:// Redis URL needs a socket path")
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError(
            f"{source}: not a valid Redis URL (no host), e.g. redis://127.0.0.1:6379/0"
        )
    db = parts.path.strip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        raise ConfigError(f"{source}: the database after the host must be a number, not {db!r}")
    return url


def redact_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``: fit for logs and messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return "<a malformed URL>"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def load_settings() -> Settings:
    """Read the CANARY_* environment variables (not cached: tests change them).

    A malformed CANARY_REDIS_URL is a ConfigError (exit 2), not a traceback later on.
    """
    raw_url = os.environ.get("CANARY_REDIS_URL", "").strip()
    return Settings(
        redis_url=check_redis_url(raw_url) if raw_url else None,
        key_prefix=_env("CANARY_KEY_PREFIX", "canary"),
        probe_queue_prefix=_env("CANARY_PROBE_QUEUE_PREFIX", "canary.probe"),
        control_queue=_env("CANARY_CONTROL_QUEUE", "canary.control"),
        log_level=_env("CANARY_LOG_LEVEL", "INFO"),
    )


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The settings of this process, read once."""
    return load_settings()
