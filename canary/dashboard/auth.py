"""Who may see the dashboard and press its buttons: HTTP Basic from the environment, CSRF tokens."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field

from canary.errors import ConfigError

USER_ENV = "CANARY_DASHBOARD_USER"
PASSWORD_ENV = "CANARY_DASHBOARD_PASSWORD"
DEFAULT_USER = "canary"
MIN_PASSWORD = 12


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str = field(repr=False)
    # Signs CSRF tokens; new on every start, so a token dies with the process that issued it.
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Credentials:
        """The log-in from the environment; there is no open mode, so no password is an error."""
        env = dict(os.environ) if env is None else env
        password = env.get(PASSWORD_ENV, "")
        if not password:
            raise ConfigError(
                f"{PASSWORD_ENV} is not set: the dashboard never runs without a log-in "
                f"(user {env.get(USER_ENV) or DEFAULT_USER}, or set {USER_ENV})"
            )
        if len(password) < MIN_PASSWORD:
            raise ConfigError(f"{PASSWORD_ENV}: must be at least {MIN_PASSWORD} characters")
        return cls(env.get(USER_ENV) or DEFAULT_USER, password)

    def check_basic(self, header: str | None) -> bool:
        """Whether an ``Authorization: Basic ...`` header carries this log-in (constant time)."""
        if not header or not header.lower().startswith("basic "):
            return False
        try:
            raw = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = raw.partition(":")
        ok_user = hmac.compare_digest(user.encode(), self.user.encode())
        ok_password = hmac.compare_digest(password.encode(), self.password.encode())
        return bool(sep) and ok_user and ok_password

    def csrf_token(self) -> str:
        """The token pages embed and actions must send back in the X-CSRF-Token header."""
        return hmac.new(self.secret, b"csrf:" + self.user.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(str(token), self.csrf_token())
