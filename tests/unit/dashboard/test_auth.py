"""The dashboard's log-in: from the environment only, compared in constant time; CSRF tokens."""

from __future__ import annotations

import base64

import pytest

from canary.dashboard.auth import Credentials
from canary.errors import ConfigError


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_no_password_is_an_error_never_an_open_dashboard() -> None:
    with pytest.raises(ConfigError, match="CANARY_DASHBOARD_PASSWORD is not set"):
        Credentials.from_env({})
    with pytest.raises(ConfigError, match="at least 12"):
        Credentials.from_env({"CANARY_DASHBOARD_PASSWORD": "short"})


def test_basic_credentials_must_match_exactly() -> None:
    creds = Credentials.from_env(
        {"CANARY_DASHBOARD_PASSWORD": "correct-horse-battery", "CANARY_DASHBOARD_USER": "sre"}
    )
    assert creds.check_basic(basic("sre", "correct-horse-battery"))
    assert not creds.check_basic(basic("canary", "correct-horse-battery"))
    assert not creds.check_basic(basic("sre", "correct-horse-batter"))
    for garbage in (
        None,
        "",
        "Bearer x",
        "Basic !!!",
        "Basic " + base64.b64encode(b"\xff").decode(),
    ):
        assert not creds.check_basic(garbage)
    assert "correct-horse" not in repr(creds)


def test_csrf_tokens_are_per_process() -> None:
    env = {"CANARY_DASHBOARD_PASSWORD": "correct-horse-battery"}
    a, b = Credentials.from_env(env), Credentials.from_env(env)
    assert a.check_csrf(a.csrf_token())
    assert not a.check_csrf(b.csrf_token())
    assert not a.check_csrf(None) and not a.check_csrf("")
