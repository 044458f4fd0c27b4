"""What each HTTP channel sends, built without sending it."""

from __future__ import annotations

from datetime import UTC, datetime

from canary.notifiers import Alert, build_notifier
from canary.notifiers.alertmanager import AlertmanagerNotifier
from canary.notifiers.slack import SlackNotifier
from canary.notifiers.webhook import WebhookNotifier


def _alert(**changes: object) -> Alert:
    base: dict[str, object] = {
        "kind": "error_budget",
        "rollout_id": "r1",
        "service": "shop",
        "stable_version": None,
        "canary_version": "2.0",
        "weight": 25,
        "summary": "error budget burning",
        "reasons": [f"reason {i}" for i in range(14)],
        "severity": "warning",
        **changes,
    }
    return Alert(**base)  # type: ignore[arg-type]


def test_resolved_alerts_have_their_own_dedupe_key() -> None:
    assert _alert().dedupe_key == "r1:error_budget"
    assert _alert(resolved=True).dedupe_key == "r1:error_budget:resolved"


def test_slack_caps_reasons_and_mentions_only_critical() -> None:
    slack = build_notifier(
        "slack", {"webhook_url": "https://hooks.example/x", "mention": "@oncall"}
    )
    assert isinstance(slack, SlackNotifier)
    body = slack.payload(_alert())
    assert not body["blocks"][0]["text"]["text"].startswith("@oncall")
    reasons = body["blocks"][2]["text"]["text"]
    assert "reason 9" in reasons and "reason 10" not in reasons and "and 4 more" in reasons
    assert "? → 2.0" in body["text"]
    critical = slack.payload(_alert(severity="critical"))
    assert critical["blocks"][0]["text"]["text"].startswith("@oncall")
    resolved = slack.payload(_alert(severity="critical", resolved=True))
    assert "*resolved: error budget burning*" in resolved["blocks"][0]["text"]["text"]


def test_alertmanager_ttl_sets_ends_at_and_timestamps_are_rfc3339() -> None:
    am = build_notifier("alertmanager", {"url": "http://am:9093", "ttl": 600})
    assert isinstance(am, AlertmanagerNotifier)
    now = datetime(2026, 11, 26, 18, 0, 0, tzinfo=UTC)
    (body,) = am.payload(_alert(), now)
    assert body["labels"]["alertname"] == "CanaryErrorBudget"
    assert body["startsAt"] == "2026-11-26T18:00:00.000Z"
    assert body["endsAt"] == "2026-11-26T18:10:00.000Z"
    assert body["annotations"]["stable_version"] == ""
    (resolved,) = am.payload(_alert(resolved=True), now)
    assert resolved["endsAt"] == resolved["startsAt"]


def test_webhook_payload_is_the_alert_plus_time_and_key() -> None:
    hook = build_notifier("webhook", {"url": "http://example/hook"})
    assert isinstance(hook, WebhookNotifier)
    body = hook.payload(_alert())
    assert body["reasons"][0] == "reason 0" and body["dedupe_key"] == "r1:error_budget"
    assert body["resolved"] is False and "timestamp" in body
