"""The Slack notifier: alerts as messages through a Slack incoming webhook (whose URL is secret)."""

from __future__ import annotations

from typing import Any

from canary.notifiers.base import Alert, WebhookURLOptions
from canary.notifiers.links import Links, links_for
from canary.plugins import parse_options

_ICONS = {"info": ":large_green_circle:", "warning": ":warning:", "critical": ":rotating_light:"}
_MAX_REASONS = 10
_MAX_TEXT = 2900  # Slack rejects section text over 3000 characters


class SlackOptions(WebhookURLOptions):
    """A ``notifiers:`` entry of ``type: slack``."""

    mention: str | None = None


class SlackNotifier:
    """Posts one message per alert: a headline, the versions and weight, and the reasons.

    The webhook URL is a credential: give it as ``webhook_url_env`` (the name of an environment
    variable) rather than ``webhook_url`` in a committed file. It never appears in errors or logs.
    """

    name = "slack"

    Options = SlackOptions

    def __init__(self, **options: Any) -> None:
        o = parse_options(SlackOptions, options, "notifier slack")
        self.mention = o.mention
        self.client = o.webhook_client("notifier slack")

    def payload(self, alert: Alert, links: Links | None = None) -> dict[str, Any]:
        links = links_for(alert) if links is None else links
        icon = _ICONS.get(alert.severity, "")
        state = "resolved: " if alert.resolved else ""
        headline = f"{icon} *{state}{alert.summary}*"
        if self.mention and alert.severity == "critical" and not alert.resolved:
            headline = f"{self.mention} {headline}"
        versions = f"{alert.stable_version or '?'} → {alert.canary_version or '?'}"
        fields = [
            f"*Service*\n{alert.service}",
            f"*Rollout*\n`{alert.rollout_id}`",
            f"*Versions* (stable → canary)\n{versions}",
            f"*Canary weight*\n{alert.weight}%",
        ]
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": headline}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
        ]
        if alert.reasons:
            shown = alert.reasons[:_MAX_REASONS]
            more = len(alert.reasons) - len(shown)
            lines = "\n".join(f"• {_escape(r)}" for r in shown)
            if more:
                lines += f"\n… and {more} more"
            blocks.append(
                {"type": "section", "text": {"type": "mrkdwn", "text": lines[:_MAX_TEXT]}}
            )
        if links.all():
            buttons: list[dict[str, Any]] = []
            for link in links.all():
                button = {
                    "type": "button",
                    "text": {"type": "plain_text", "text": link.text},
                    "url": link.url,
                }
                if link.style:
                    button["style"] = link.style
                buttons.append(button)
            blocks.append({"type": "actions", "elements": buttons})
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": f"{alert.kind} · {alert.severity} · canary"}
                ],
            }
        )
        # ``text`` is what notifications and clients without blocks show.
        text = f"[{alert.kind}] {alert.service} {versions} at {alert.weight}%: {alert.summary}"
        return {"text": _escape(text), "blocks": blocks}

    def send(self, alert: Alert) -> None:
        self.client.request(self.payload(alert))


def _escape(text: str) -> str:
    # Slack's mrkdwn treats these three as control characters.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
