"""The Microsoft Teams notifier: an Adaptive Card posted to a Teams Workflows webhook."""

from __future__ import annotations

from typing import Any

from canary.notifiers.base import Alert, WebhookURLOptions
from canary.notifiers.links import Links, links_for
from canary.plugins import parse_options

_COLOURS = {"info": "Good", "warning": "Warning", "critical": "Attention"}
_MAX_REASONS = 10


class TeamsOptions(WebhookURLOptions):
    """A ``notifiers:`` entry of ``type: teams``."""


class TeamsNotifier:
    """Posts ``{"type": "message", "attachments": [<Adaptive Card 1.4>]}``: the summary as a
    heading, service, rollout, versions and weight as facts, the reasons, and links as
    ``Action.OpenUrl`` buttons. The webhook URL is a credential: give ``webhook_url_env``."""

    name = "teams"
    Options = TeamsOptions

    def __init__(self, **options: Any) -> None:
        o = parse_options(TeamsOptions, options, "notifier teams")
        self.client = o.webhook_client("notifier teams")

    def payload(self, alert: Alert, links: Links | None = None) -> dict[str, Any]:
        links = links_for(alert) if links is None else links
        state = "Resolved: " if alert.resolved else ""
        body: list[dict[str, Any]] = [
            {
                "type": "TextBlock",
                "text": f"{state}{alert.summary}",
                "weight": "Bolder",
                "size": "Medium",
                "color": _COLOURS.get(alert.severity, "Default"),
                "wrap": True,
            },
            {
                "type": "FactSet",
                "facts": [
                    {"title": "Service", "value": alert.service},
                    {"title": "Rollout", "value": alert.rollout_id},
                    {
                        "title": "Versions",
                        "value": f"{alert.stable_version or '?'} → {alert.canary_version or '?'}",
                    },
                    {"title": "Canary weight", "value": f"{alert.weight}%"},
                    {"title": "Kind", "value": f"{alert.kind} ({alert.severity})"},
                ],
            },
        ]
        shown = alert.reasons[:_MAX_REASONS]
        if shown:
            more = len(alert.reasons) - len(shown)
            text = "\n".join(f"- {r}" for r in shown) + (f"\n- … and {more} more" if more else "")
            body.append({"type": "TextBlock", "text": text, "wrap": True})
        card: dict[str, Any] = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": body,
        }
        actions = [
            {"type": "Action.OpenUrl", "title": link.text, "url": link.url}
            | (
                {"style": "positive" if link.style == "primary" else "destructive"}
                if link.style
                else {}
            )
            for link in links.all()
        ]
        if actions:
            card["actions"] = actions
        return {
            "type": "message",
            "attachments": [
                {
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": None,
                    "content": card,
                }
            ],
        }

    def send(self, alert: Alert) -> None:
        self.client.request(self.payload(alert))
