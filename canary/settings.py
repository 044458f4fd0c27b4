"""Runtime settings read once from the environment (CANARY_* variables)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache


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


def load_settings() -> Settings:
    """Read the CANARY_* environment variables (not cached: tests change them)."""
    return Settings(
        redis_url=os.environ.get("CANARY_REDIS_URL") or None,
        key_prefix=_env("CANARY_KEY_PREFIX", "canary"),
        probe_queue_prefix=_env("CANARY_PROBE_QUEUE_PREFIX", "canary.probe"),
        control_queue=_env("CANARY_CONTROL_QUEUE", "canary.control"),
        log_level=_env("CANARY_LOG_LEVEL", "INFO"),
    )


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The settings of this process, read once."""
    return load_settings()
