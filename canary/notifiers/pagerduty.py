"""The PagerDuty notifier: alerts as PagerDuty Events API v2 trigger and resolve events."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from canary.http_out import HttpURL, secret_from_env
from canary.notifiers.base import Alert, HttpOptions
from canary.notifiers.links import Links, links_for
from canary.plugins import parse_options

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
_SEVERITIES = {"info": "info", "warning": "warning", "critical": "critical"}


class PagerDutyOptions(HttpOptions):
    """A ``notifiers:`` entry of ``type: pagerduty``."""

    routing_key_env: str = Field(description="Variable holding the integration's routing key.")
    url: HttpURL = EVENTS_URL
    source: str = "canary"
    component: str | None = None
    group: str | None = None


class PagerDutyNotifier:
    """One event per alert: ``trigger`` (``resolve`` when resolved) with ``dedup_key``
    ``canary:ROLLOUT:KIND``, so a resolve closes the incident its trigger opened. The routing
    key travels in the body; it comes from ``routing_key_env`` and is masked in every error."""

    name = "pagerduty"
    Options = PagerDutyOptions

    def __init__(self, **options: Any) -> None:
        o = parse_options(PagerDutyOptions, options, "notifier pagerduty")
        self.routing_key = secret_from_env(o.routing_key_env, "notifier pagerduty") or ""
        self.o = o
        self.client = o.client(
            o.url,
            "notifier pagerduty",
            path_is_secret=False,
        )
        self.client.redact.add(self.routing_key)

    def payload(self, alert: Alert, links: Links | None = None) -> dict[str, Any]:
        links = links_for(alert) if links is None else links
        event: dict[str, Any] = {
            "routing_key": self.routing_key,
            "event_action": "resolve" if alert.resolved else "trigger",
            "dedup_key": f"canary:{alert.rollout_id}:{alert.kind}"[:255],
            "client": "canary",
        }
        if links.dashboard:
            event["client_url"] = links.dashboard.url
        if links.all():
            event["links"] = [{"href": link.url, "text": link.text} for link in links.all()]
        if alert.resolved:
            return event  # a resolve needs no payload
        details = {
            "rollout": alert.rollout_id,
            "service": alert.service,
            "stable_version": alert.stable_version,
            "canary_version": alert.canary_version,
            "canary_weight": alert.weight,
            "reasons": alert.reasons,
        }
        payload: dict[str, Any] = {
            "summary": f"{alert.service}: {alert.summary}"[:1024],
            "source": self.o.source,
            "severity": _SEVERITIES.get(alert.severity, "warning"),
            "class": alert.kind,
            "custom_details": details,
        }
        if self.o.component:
            payload["component"] = self.o.component
        if self.o.group:
            payload["group"] = self.o.group
        event["payload"] = payload
        return event

    def send(self, alert: Alert) -> None:
        self.client.request(self.payload(alert))
