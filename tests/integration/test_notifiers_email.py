"""The email notifier against a real local SMTP server (aiosmtpd) that requires a login."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from canary.errors import ConfigError, NotifierError
from canary.local.procs import free_port
from canary.notifiers import Alert, build_notifier

pytestmark = [
    pytest.mark.integration,
    # The test server takes a login without TLS on purpose (no certificates here).
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS"),
]

PASSWORD = "smtp-password-do-not-log-9"


class Inbox:
    """Keeps every message the server accepted, and who logged in."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            (envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.content))
        )
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == b"canary"
            and auth_data.password == PASSWORD.encode()
        )
        if ok:
            self.logins.append(auth_data.login.decode())
        # handled=False: aiosmtpd answers 535 itself.
        return AuthResult(success=ok, handled=False)


@pytest.fixture()
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=inbox.authenticate,
        auth_require_tls=False,
        auth_required=True,
        # One mechanism, so a refused login is answered at once (not retried as LOGIN).
        auth_exclude_mechanism=["LOGIN"],
    )
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def _alert(**changes: Any) -> Alert:
    fields: dict[str, Any] = {
        "kind": "stuck",
        "rollout_id": "shop-20261201-3",
        "service": "shop",
        "stable_version": "1.0.0",
        "canary_version": "1.1.0",
        "weight": 25,
        "summary": "no progress for 6 minutes",
        "reasons": ["no probe batch recorded since step 3", "control queue has 0 workers"],
        "severity": "critical",
        **changes,
    }
    return Alert(**fields)


def _options(port: int, **changes: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "username": "canary",
        "password_env": "SMTP_PASSWORD",
        "from": "canary@example.com",
        "to": ["oncall@example.com", "shop-team@example.com"],
        **changes,
    }


def test_an_alert_is_mailed_with_its_reasons_and_links(
    smtp: tuple[Inbox, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox, port = smtp
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    monkeypatch.setenv("CANARY_DASHBOARD_URL", "https://canary.example.com")
    monkeypatch.setenv("CANARY_ACTION_SECRET", "action-signing-secret-77")
    build_notifier("email", _options(port)).send(_alert())
    ((sender, recipients, msg),) = inbox.messages
    assert inbox.logins == ["canary"]
    assert sender == "canary@example.com"
    assert recipients == ["oncall@example.com", "shop-team@example.com"]
    assert msg["Subject"] == "[canary] stuck: shop: no progress for 6 minutes"
    body = msg.get_payload(decode=True).decode()
    assert "Versions:       1.0.0 (stable) -> 1.1.0 (canary)" in body
    assert "  - no probe batch recorded since step 3" in body
    assert "Dashboard: https://canary.example.com/rollouts/shop-20261201-3" in body
    assert "Abort: https://canary.example.com/rollouts/shop-20261201-3?action=abort&token=" in body


def test_a_refused_login_is_an_error_without_the_password(
    smtp: tuple[Inbox, int], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    inbox, port = smtp
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD + "-wrong")
    with caplog.at_level(logging.DEBUG), pytest.raises(NotifierError) as exc:
        build_notifier("email", _options(port)).send(_alert())
    assert "SMTPAuthenticationError" in str(exc.value)
    assert PASSWORD not in str(exc.value) + caplog.text
    assert inbox.messages == []


def test_an_unreachable_server_is_an_error() -> None:
    notifier = build_notifier("email", _options(free_port(), password_env=None, username=None))
    with pytest.raises(NotifierError, match=r"sending through 127\.0\.0\.1:\d+ failed"):
        notifier.send(_alert())


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError) as exc:
        build_notifier("email", {"host": "smtp", "to": [], "security": "ssl", "password_env": "X"})
    text = str(exc.value)
    for expected in (
        "from: is required",
        "to: list should have at least 1 item",
        "security: input should be 'starttls', 'tls' or 'none'",
    ):
        assert expected in text
