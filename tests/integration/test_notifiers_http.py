"""The webhook, Slack and Alertmanager notifiers against real local HTTP receivers."""

from __future__ import annotations

import logging
from datetime import datetime

import pytest

from canary.errors import ConfigError, NotifierError
from canary.notifiers import Alert, build_notifier, deliver
from tests.fixtures.proxies import HttpReceiver, Reply, closed_port_url

pytestmark = pytest.mark.integration

SLACK_PATH = "/services/T0ABCDEF/B0GHIJK/xoxbSuperSecretWebhookToken"
SECRET = "webhook-shared-secret-42"


def _alert(**changes: object) -> Alert:
    fields: dict[str, object] = {
        "kind": "rollback",
        "rollout_id": "shop-20261126-1",
        "service": "shop",
        "stable_version": "1.0.0",
        "canary_version": "1.1.0",
        "weight": 10,
        "summary": "rollout rolled back; traffic back to stable",
        "reasons": ["checkout success 91.0% < 99% (stable 99.8%)", "p95 latency +42% > 10%"],
        "severity": "critical",
        **changes,
    }
    return Alert(**fields)  # type: ignore[arg-type]


def test_webhook_posts_the_alert_with_a_timestamp_and_secret(
    http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    notifier = build_notifier(
        "webhook", {"url": http_receiver.url + "/alerts", "secret_env": "HOOK_SECRET"}
    )
    notifier.send(_alert())
    (req,) = http_receiver.requests
    body = req.json()
    assert req.path == "/alerts" and req.headers["x-canary-token"] == SECRET
    assert {k: body[k] for k in _alert().to_dict()} == _alert().to_dict()
    assert body["dedupe_key"] == "shop-20261126-1:rollback"
    assert datetime.fromisoformat(body["timestamp"]).tzinfo is not None


def test_webhook_retries_then_delivers(http_receiver: HttpReceiver) -> None:
    http_receiver.reply(500, Reply(429, headers={"Retry-After": "0"}))
    notifier = build_notifier("webhook", {"url": http_receiver.url, "backoff": 0.05})
    notifier.send(_alert())
    assert len(http_receiver.requests) == 3


def test_webhook_failure_is_a_notifier_error_without_secrets(
    http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    http_receiver.default = Reply(503, f"no thanks {SECRET}".encode())
    url = f"{http_receiver.url}/hook?token=querytoken123"
    notifier = build_notifier(
        "webhook", {"url": url, "secret_env": "HOOK_SECRET", "retries": 2, "backoff": 0}
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(NotifierError) as exc:
        notifier.send(_alert())
    text = str(exc.value) + caplog.text
    assert "HTTP 503" in str(exc.value) and len(http_receiver.requests) == 3
    for secret in (SECRET, "querytoken123", "/hook"):
        assert secret not in text


def test_slack_message_has_blocks_and_text(http_receiver: HttpReceiver) -> None:
    notifier = build_notifier(
        "slack", {"webhook_url": http_receiver.url + SLACK_PATH, "mention": "<!here>"}
    )
    notifier.send(_alert(reasons=["a < b & c"]))
    (req,) = http_receiver.requests
    body = req.json()
    assert req.path == SLACK_PATH
    assert "shop" in body["text"] and "1.0.0 → 1.1.0" in body["text"] and "10%" in body["text"]
    blocks = body["blocks"]
    assert blocks[0]["text"]["text"].startswith("<!here> :rotating_light: *rollout rolled back")
    fields = " ".join(f["text"] for f in blocks[1]["fields"])
    assert "shop-20261126-1" in fields and "1.0.0 → 1.1.0" in fields and "10%" in fields
    assert blocks[2]["text"]["text"] == "• a &lt; b &amp; c"


def test_slack_url_from_env_and_never_in_errors_or_logs(
    http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SLACK_URL", http_receiver.url + SLACK_PATH)
    http_receiver.default = Reply(403, b"invalid_token")
    notifier = build_notifier("slack", {"webhook_url_env": "SLACK_URL", "backoff": 0})
    with caplog.at_level(logging.DEBUG):
        failed = deliver([notifier], _alert())
    assert failed == ["slack"]
    assert "HTTP 403: invalid_token" in caplog.text
    assert "xoxbSuperSecretWebhookToken" not in caplog.text and "T0ABCDEF" not in caplog.text
    # Unreachable: the connection error must not carry the path either.
    dead = build_notifier(
        "slack",
        {"webhook_url": closed_port_url() + "/T0ABCDEF/xoxbZZZ", "retries": 1, "backoff": 0},
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(NotifierError) as exc:
        dead.send(_alert())
    assert "xoxbZZZ" not in str(exc.value) + caplog.text
    assert "T0ABCDEF" not in str(exc.value) + caplog.text
    with pytest.raises(ConfigError, match="webhook_url_env"):
        build_notifier("slack", {})


def test_alertmanager_gets_v2_alerts(http_receiver: HttpReceiver) -> None:
    notifier = build_notifier(
        "alertmanager",
        {"url": http_receiver.url + "/", "labels": {"team": "shop"}, "generator_url": "http://ci"},
    )
    notifier.send(_alert(kind="predicted_breach", severity="warning"))
    notifier.send(_alert(kind="predicted_breach", severity="warning", resolved=True))
    first, second = http_receiver.requests
    assert (first.method, first.path) == ("POST", "/api/v2/alerts")
    (firing,) = first.json()
    assert firing["labels"] == {
        "team": "shop",
        "alertname": "CanaryPredictedBreach",
        "severity": "warning",
        "rollout": "shop-20261126-1",
        "service": "shop",
    }
    assert firing["annotations"]["summary"].startswith("rollout rolled back")
    assert "checkout success 91.0%" in firing["annotations"]["description"]
    assert "canary 1.1.0 at 10%" in firing["annotations"]["description"]
    assert firing["startsAt"].endswith("Z") and "endsAt" not in firing
    assert firing["generatorURL"] == "http://ci"
    (resolved,) = second.json()
    assert resolved["labels"] == firing["labels"]
    assert resolved["endsAt"] >= resolved["startsAt"]


def test_alertmanager_down_is_a_notifier_error() -> None:
    notifier = build_notifier(
        "alertmanager", {"url": closed_port_url(), "retries": 1, "backoff": 0}
    )
    with pytest.raises(NotifierError, match="failed after 2 attempts"):
        notifier.send(_alert())
