"""Redaction of secrets and the safe form of URLs used in every error and log line."""

from __future__ import annotations

import pytest

from canary.errors import ConfigError, NotifierError
from canary.http_out import HttpClient, Redactor, safe_url, secret_from_env


def test_redactor_masks_url_parts_and_header_values() -> None:
    redact = Redactor(["header-secret"])
    redact.add_url("https://user:pw1234@hooks.example/services/T1/B2/tok3n?key=abcdef")
    text = (
        "POST https://user:pw1234@hooks.example/services/T1/B2/tok3n?key=abcdef failed; "
        "url: /services/T1/B2/tok3n?key=abcdef, header-secret, key abcdef, pw1234"
    )
    out = redact(text)
    for secret in ("tok3n", "abcdef", "header-secret", "pw1234", "T1/B2"):
        assert secret not in out


def test_short_values_are_not_masked_everywhere() -> None:
    redact = Redactor(["ab", "x"])
    assert redact("about x") == "about x"


def test_a_public_path_stays_readable() -> None:
    redact = Redactor()
    redact.add_url("http://am:9093/api/v2/alerts?token=zzzz9", path_is_secret=False)
    assert redact("/api/v2/alerts?token=zzzz9 zzzz9") == "/api/v2/alerts?*** ***"


@pytest.mark.parametrize(
    ("url", "secret_path", "shown"),
    [
        ("https://hooks.slack.com/services/T/B/X", True, "https://hooks.slack.com/***"),
        ("http://127.0.0.1:8080/", True, "http://127.0.0.1:8080/"),
        ("http://am:9093/api/v2/alerts", False, "http://am:9093/api/v2/alerts"),
        ("http://am:9093/a?token=1", False, "http://am:9093/a?***"),
    ],
)
def test_safe_url(url: str, secret_path: bool, shown: str) -> None:
    assert safe_url(url, path_is_secret=secret_path) == shown


def test_secrets_come_from_named_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    assert secret_from_env(None, "x") is None
    monkeypatch.setenv("CANARY_TEST_SECRET", "value")
    assert secret_from_env("CANARY_TEST_SECRET", "x") == "value"
    monkeypatch.setenv("CANARY_TEST_SECRET", "")
    with pytest.raises(ConfigError, match="CANARY_TEST_SECRET is not set or empty"):
        secret_from_env("CANARY_TEST_SECRET", "x")


def test_bad_client_settings_do_not_echo_the_url() -> None:
    with pytest.raises(ConfigError) as exc:
        HttpClient("hooks.slack.com/services/SECRET", "slack", NotifierError)
    assert "SECRET" not in str(exc.value)
    with pytest.raises(ConfigError, match="timeout"):
        HttpClient("http://x", "w", NotifierError, timeout=0)
