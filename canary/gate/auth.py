"""Bearer-token authentication of every gate request; the token comes from the environment."""

from __future__ import annotations

import hmac
import os

from canary.errors import ConfigError

TOKEN_ENV = "CANARY_GATE_TOKEN"
MIN_TOKEN_CHARS = 16


def token_from_env() -> str:
    """CANARY_GATE_TOKEN, checked; without one the gate must not start (ConfigError → exit 2)."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise ConfigError(
            f"{TOKEN_ENV} is not set: the gate answers only callers that send "
            f"'Authorization: Bearer ${TOKEN_ENV}', so it will not start without one"
        )
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"{TOKEN_ENV} is too short ({len(token)} characters; at least {MIN_TOKEN_CHARS}): "
            "use e.g. `openssl rand -hex 24`"
        )
    return token


def authorized(header: str | None, token: str) -> bool:
    """Whether an Authorization header carries ``token`` (constant-time comparison)."""
    if not header:
        return False
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())
