"""The gate's token: required from the environment, compared in constant time."""

from __future__ import annotations

import pytest

from canary.errors import ConfigError
from canary.gate.auth import authorized, token_from_env

TOKEN = "0123456789abcdef0123"


def test_no_token_or_a_short_one_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CANARY_GATE_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="not set"):
        token_from_env()
    monkeypatch.setenv("CANARY_GATE_TOKEN", "abc12")
    with pytest.raises(ConfigError, match="too short") as err:
        token_from_env()
    assert "abc12" not in str(err.value)  # a secret is never echoed
    monkeypatch.setenv("CANARY_GATE_TOKEN", f"  {TOKEN}\n")
    assert token_from_env() == TOKEN


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (f"Bearer {TOKEN}", True),
        (f"bearer {TOKEN}", True),
        (None, False),
        ("", False),
        (TOKEN, False),
        (f"Basic {TOKEN}", False),
        (f"Bearer {TOKEN}x", False),
        ("Bearer ", False),
    ],
)
def test_authorized(header: str | None, ok: bool) -> None:
    assert authorized(header, TOKEN) is ok
