"""The Discord notifier: an embed posted through a Discord channel webhook."""

from __future__ import annotations

from typing import Any

from canary.notifiers.base import Alert, WebhookURLOptions
from canary.notifiers.links import Links, links_for
from canary.plugins import parse_options

_COLOURS = {"info": 0x2EB67D, "warning": 0xECB22E, "critical": 0xE01E5A}
# Discord's documented limits for one embed.
_TITLE, _DESCRIPTION, _FIELD_VALUE, _CONTENT = 256, 4096, 1024, 2000


class DiscordOptions(WebhookURLOptions):
    """A ``notifiers:`` entry of ``type: discord``."""

    username: str = "canary"


class DiscordNotifier:
    """Posts one message with one embed: the summary as title, the reasons as description,
    service, rollout, versions and weight as fields, and the links as a field of markdown links.
    Mentions are disabled (``allowed_mentions``), so text from a rollout cannot ping anyone."""

    name = "discord"
    Options = DiscordOptions

    def __init__(self, **options: Any) -> None:
        o = parse_options(DiscordOptions, options, "notifier discord")
        self.username = o.username
        self.client = o.webhook_client("notifier discord")

    def payload(self, alert: Alert, links: Links | None = None) -> dict[str, Any]:
        links = links_for(alert) if links is None else links
        state = "Resolved: " if alert.resolved else ""
        versions = f"{alert.stable_version or '?'} → {alert.canary_version or '?'}"
        fields = [
            {"name": "Service", "value": alert.service, "inline": True},
            {"name": "Rollout", "value": alert.rollout_id, "inline": True},
            {"name": "Versions (stable → canary)", "value": versions, "inline": True},
            {"name": "Canary weight", "value": f"{alert.weight}%", "inline": True},
        ]
        if links.all():
            value = " · ".join(f"[{link.text}]({link.url})" for link in links.all())
            fields.append({"name": "Links", "value": value[:_FIELD_VALUE], "inline": False})
        description = "\n".join(f"• {r}" for r in alert.reasons)
        embed: dict[str, Any] = {
            "title": _clip(f"{state}{alert.summary}", _TITLE),
            "description": _clip(description, _DESCRIPTION) if description else None,
            "color": _COLOURS.get(alert.severity, 0),
            "fields": [{**f, "value": _clip(str(f["value"]), _FIELD_VALUE)} for f in fields],
            "footer": {"text": f"{alert.kind} · {alert.severity} · canary"},
        }
        if links.dashboard:
            embed["url"] = links.dashboard.url
        content = f"[{alert.kind}] {alert.service} {versions} at {alert.weight}%: {alert.summary}"
        return {
            "username": self.username,
            "content": _clip(content, _CONTENT),
            "embeds": [{k: v for k, v in embed.items() if v is not None}],
            "allowed_mentions": {"parse": []},
        }

    def send(self, alert: Alert) -> None:
        self.client.request(self.payload(alert))


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
