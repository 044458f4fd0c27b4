"""CANARY_* settings: the Redis URL is checked once where it is read, and redacted for messages."""

from __future__ import annotations

import pytest

from canary.errors import ConfigError
from canary.settings import check_redis_url, load_settings, redact_url


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://:secret@redis.internal:6379/2",
        "rediss://user:pw@host",
        "unix:///run/redis.sock",
    ],
)
def test_good_urls_pass(url: str) -> None:
    assert check_redis_url(url) == url


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("localhost:6379", "scheme 'localhost'"),
        ("127.0.0.1", "no scheme"),
        ("http://h:6379/0", "scheme 'http'"),
        ("redis://h:port/0", "not a valid Redis URL"),
        ("redis:///0", "no host"),
        ("redis://h:6379/zero", "must be a number"),
        ("unix://", "socket path"),
    ],
)
def test_bad_urls_name_the_variable(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_redis_url(url)
    assert str(err.value).startswith("CANARY_REDIS_URL: ")
    assert says in str(err.value)


def test_load_settings_checks_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANARY_REDIS_URL", "localhost:6379")
    with pytest.raises(ConfigError, match="CANARY_REDIS_URL"):
        load_settings()
    monkeypatch.setenv("CANARY_REDIS_URL", "  ")
    assert load_settings().redis_url is None


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url("redis://:s3cret@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert redact_url("rediss://me:s3cret@h/1") == "rediss://me:***@h/1"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert "s3cret" not in redact_url("redis://:s3cret@h:notaport/0")
