"""The webhook, Slack, Alertmanager, Teams, Discord and PagerDuty notifiers against real local
HTTP receivers."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

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


# --- Teams, Discord and PagerDuty, each checked against its documented payload shape ----------

DASHBOARD_ENV = {
    "CANARY_DASHBOARD_URL": "https://canary.example.com",
    "CANARY_ACTION_SECRET": "action-signing-secret-77",
}


def _links_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in DASHBOARD_ENV.items():
        monkeypatch.setenv(name, value)


def _check_teams_message(body: dict[str, Any]) -> dict[str, Any]:
    """A Teams Workflows webhook takes a message whose attachments are Adaptive Cards."""
    assert body["type"] == "message"
    (attachment,) = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card: dict[str, Any] = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] in ("1.2", "1.3", "1.4", "1.5")
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    for element in card["body"]:
        assert element["type"] in ("TextBlock", "FactSet")
        if element["type"] == "TextBlock":
            assert isinstance(element["text"], str) and element["text"]
        else:
            assert all(set(f) == {"title", "value"} for f in element["facts"])
    for action in card.get("actions", []):
        assert action["type"] == "Action.OpenUrl" and action["url"].startswith("https://")
        assert action.get("style", "default") in ("default", "positive", "destructive")
    return card


def _check_discord_message(body: dict[str, Any]) -> dict[str, Any]:
    """Discord's execute-webhook limits: content <= 2000, <= 10 embeds, title <= 256,
    description <= 4096, <= 25 fields of name <= 256 and value <= 1024, 6000 in all."""
    assert len(body["content"]) <= 2000 and len(body["embeds"]) <= 10
    (embed,) = body["embeds"]
    assert len(embed["title"]) <= 256 and len(embed.get("description", "")) <= 4096
    assert len(embed["fields"]) <= 25
    for f in embed["fields"]:
        assert 0 < len(f["name"]) <= 256 and 0 < len(f["value"]) <= 1024
        assert isinstance(f["inline"], bool)
    total = len(embed["title"]) + len(embed.get("description", "")) + len(embed["footer"]["text"])
    total += sum(len(f["name"]) + len(f["value"]) for f in embed["fields"])
    assert total <= 6000 and isinstance(embed["color"], int)
    assert body["allowed_mentions"] == {"parse": []}
    return embed


def _check_pagerduty_event(body: dict[str, Any]) -> None:
    """Events API v2: routing_key (32 characters), event_action, dedup_key <= 255; a trigger's
    payload has summary <= 1024, source and one of four severities."""
    assert len(body["routing_key"]) == 32
    assert body["event_action"] in ("trigger", "acknowledge", "resolve")
    assert 0 < len(body["dedup_key"]) <= 255
    if body["event_action"] == "trigger":
        payload = body["payload"]
        assert 0 < len(payload["summary"]) <= 1024 and payload["source"]
        assert payload["severity"] in ("critical", "error", "warning", "info")
    for link in body.get("links", []):
        assert set(link) == {"href", "text"}


def test_teams_posts_an_adaptive_card_with_links(
    http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    _links_env(monkeypatch)
    monkeypatch.setenv("TEAMS_URL", http_receiver.url + "/workflows/abc/triggers/manual?sig=s3cr3t")
    http_receiver.default = Reply(202, b"")
    build_notifier("teams", {"webhook_url_env": "TEAMS_URL"}).send(_alert(kind="stuck"))
    (req,) = http_receiver.requests
    card = _check_teams_message(req.json())
    assert card["body"][0]["text"] == "rollout rolled back; traffic back to stable"
    assert "checkout success 91.0%" in card["body"][2]["text"]
    titles = [a["title"] for a in card["actions"]]
    assert titles == ["Dashboard", "Report", "Promote", "Abort"]
    assert card["actions"][0]["url"] == "https://canary.example.com/rollouts/shop-20261126-1"


def test_discord_posts_an_embed(
    http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    _links_env(monkeypatch)
    monkeypatch.setenv("DISCORD_URL", http_receiver.url + "/api/webhooks/123/t0k3nDiscordSecret")
    http_receiver.default = Reply(204, b"")
    notifier = build_notifier("discord", {"webhook_url_env": "DISCORD_URL"})
    notifier.send(_alert(reasons=[f"reason {i} " + "x" * 300 for i in range(30)]))
    (req,) = http_receiver.requests
    embed = _check_discord_message(req.json())
    assert embed["url"] == "https://canary.example.com/rollouts/shop-20261126-1"
    assert (
        "[Report](https://canary.example.com/rollouts/shop-20261126-1/report)"
        in (embed["fields"][-1]["value"])
    )


def test_pagerduty_triggers_then_resolves_and_keeps_its_key_secret(
    http_receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    key = "PDr0ut1ngKeyABCDEFGHIJKLMNOPQRST"
    monkeypatch.setenv("PD_ROUTING_KEY", key)
    accepted = b'{"status":"success","message":"Event processed","dedup_key":"x"}'
    http_receiver.default = Reply(202, accepted, {"Content-Type": "application/json"})
    notifier = build_notifier(
        "pagerduty", {"routing_key_env": "PD_ROUTING_KEY", "url": http_receiver.url + "/v2/enqueue"}
    )
    notifier.send(_alert())
    notifier.send(_alert(resolved=True))
    trigger, resolve = (r.json() for r in http_receiver.requests)
    for event in (trigger, resolve):
        _check_pagerduty_event(event)
    assert trigger["payload"]["custom_details"]["reasons"] == _alert().reasons
    assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
    assert trigger["dedup_key"] == resolve["dedup_key"] == "canary:shop-20261126-1:rollback"
    # A refusal that echoes the body back must not put the routing key in errors or logs.
    http_receiver.default = Reply(400, f'{{"status":"invalid event","key":"{key}"}}'.encode())
    with caplog.at_level(logging.DEBUG), pytest.raises(NotifierError) as exc:
        notifier.send(_alert())
    assert "HTTP 400" in str(exc.value) and key not in str(exc.value) + caplog.text


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("teams", "/workflows/0a1b2c/triggers/manual/paths/invoke?sig=t3amsS1gnature"),
        ("discord", "/api/webhooks/123456/d1scordT0kenValue"),
    ],
)
def test_webhook_urls_never_reach_errors_or_logs(
    http_receiver: HttpReceiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    path: str,
) -> None:
    monkeypatch.setenv("HOOK_URL", http_receiver.url + path)
    http_receiver.default = Reply(403, b"forbidden")
    notifier = build_notifier(kind, {"webhook_url_env": "HOOK_URL", "retries": 1, "backoff": 0})
    with caplog.at_level(logging.DEBUG), pytest.raises(NotifierError) as exc:
        notifier.send(_alert())
    text = str(exc.value) + caplog.text
    assert "HTTP 403: forbidden" in str(exc.value)
    for secret in ("t3amsS1gnature", "0a1b2c", "d1scordT0kenValue", "123456"):
        assert secret not in text
