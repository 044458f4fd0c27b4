"""What each HTTP channel sends, built without sending it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from canary.notifiers import Alert, build_notifier
from canary.notifiers.alertmanager import AlertmanagerNotifier
from canary.notifiers.discord import DiscordNotifier
from canary.notifiers.links import Link, Links
from canary.notifiers.pagerduty import PagerDutyNotifier
from canary.notifiers.slack import SlackNotifier
from canary.notifiers.teams import TeamsNotifier
from canary.notifiers.webhook import WebhookNotifier

LINKS = Links(
    Link("Dashboard", "https://c.example/rollouts/r1"),
    Link("Report", "https://c.example/rollouts/r1/report"),
    (
        Link("Promote", "https://c.example/rollouts/r1?action=promote&token=1.a", "primary"),
        Link("Abort", "https://c.example/rollouts/r1?action=abort&token=1.b", "danger"),
    ),
)


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


def test_slack_carries_link_buttons() -> None:
    slack = build_notifier("slack", {"webhook_url": "https://hooks.example/x"})
    assert isinstance(slack, SlackNotifier)
    body = slack.payload(_alert(), LINKS)
    (actions,) = [b for b in body["blocks"] if b["type"] == "actions"]
    buttons = {e["text"]["text"]: (e["url"], e.get("style")) for e in actions["elements"]}
    assert buttons == {
        "Dashboard": ("https://c.example/rollouts/r1", None),
        "Report": ("https://c.example/rollouts/r1/report", None),
        "Promote": ("https://c.example/rollouts/r1?action=promote&token=1.a", "primary"),
        "Abort": ("https://c.example/rollouts/r1?action=abort&token=1.b", "danger"),
    }
    assert not any(b["type"] == "actions" for b in slack.payload(_alert(), Links())["blocks"])


def test_teams_is_an_adaptive_card_with_open_url_actions() -> None:
    teams = build_notifier("teams", {"webhook_url": "https://example.webhook.office.com/x"})
    assert isinstance(teams, TeamsNotifier)
    body = teams.payload(_alert(), LINKS)
    (attachment,) = body["attachments"]
    card = attachment["content"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    assert [a["title"] for a in card["actions"]] == ["Dashboard", "Report", "Promote", "Abort"]
    assert "reason 9" in card["body"][2]["text"] and "and 4 more" in card["body"][2]["text"]


def test_discord_respects_embed_limits_and_pings_no_one() -> None:
    discord = build_notifier("discord", {"webhook_url": "https://discord.example/api/webhooks/1/x"})
    assert isinstance(discord, DiscordNotifier)
    body = discord.payload(_alert(summary="@everyone " + "x" * 400, reasons=["r" * 5000]), LINKS)
    (embed,) = body["embeds"]
    assert len(embed["title"]) == 256 and len(embed["description"]) == 4096
    assert body["allowed_mentions"] == {"parse": []}
    assert (
        "[Abort](https://c.example/rollouts/r1?action=abort&token=1.b)"
        in embed["fields"][-1]["value"]
    )


def test_pagerduty_triggers_and_resolves_one_incident(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PD_KEY", "R0UT1NGKEY0123456789ABCDEFGHIJKL")
    pd = build_notifier("pagerduty", {"routing_key_env": "PD_KEY", "component": "checkout"})
    assert isinstance(pd, PagerDutyNotifier)
    trigger = pd.payload(_alert(severity="critical"), LINKS)
    assert trigger["event_action"] == "trigger" and trigger["dedup_key"] == "canary:r1:error_budget"
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["component"] == "checkout"
    assert trigger["links"][0] == {"href": "https://c.example/rollouts/r1", "text": "Dashboard"}
    resolve = pd.payload(_alert(resolved=True), LINKS)
    assert resolve["event_action"] == "resolve" and "payload" not in resolve
    assert resolve["dedup_key"] == trigger["dedup_key"]
