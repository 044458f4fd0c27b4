"""The Alertmanager notifier: alerts pushed to Prometheus Alertmanager's v2 API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import Field

from canary.http_out import HttpURL, secret_from_env
from canary.notifiers.base import Alert, HttpOptions
from canary.plugins import parse_options


class AlertmanagerOptions(HttpOptions):
    """A ``notifiers:`` entry of ``type: alertmanager``."""

    url: HttpURL
    labels: dict[str, str] = Field(default_factory=dict)
    generator_url: str | None = None
    ttl: float | None = Field(default=None, gt=0)
    bearer_token_env: str | None = None


class AlertmanagerNotifier:
    """POSTs each alert to ``<url>/api/v2/alerts``; resolved alerts carry ``endsAt``.

    Labels identify the alert (alertname, severity, rollout, service, plus ``labels``); versions,
    weight and reasons go in the annotations so they do not split one alert into many. A firing
    alert gets ``endsAt`` = now + ``ttl`` when ``ttl`` is set, else Alertmanager's resolve_timeout
    applies. ``bearer_token_env`` names a variable holding a token for an authenticating proxy.
    """

    name = "alertmanager"

    Options = AlertmanagerOptions

    def __init__(self, **options: Any) -> None:
        o = parse_options(AlertmanagerOptions, options, "notifier alertmanager")
        token = secret_from_env(o.bearer_token_env, "notifier alertmanager")
        self.labels = dict(o.labels)
        self.generator_url = o.generator_url
        self.ttl = o.ttl
        self.client = o.client(
            o.url.rstrip("/") + "/api/v2/alerts",
            "notifier alertmanager",
            secret_headers={"Authorization": f"Bearer {token}"} if token else {},
            path_is_secret=False,
        )

    def payload(self, alert: Alert, now: datetime | None = None) -> list[dict[str, Any]]:
        now = now or datetime.now(UTC)
        description = [
            f"{alert.service}: stable {alert.stable_version or '?'}, "
            f"canary {alert.canary_version or '?'} at {alert.weight}% of traffic.",
            *alert.reasons,
        ]
        body: dict[str, Any] = {
            "labels": {
                **self.labels,
                "alertname": "Canary" + "".join(p.title() for p in alert.kind.split("_")),
                "severity": alert.severity,
                "rollout": alert.rollout_id,
                "service": alert.service,
            },
            "annotations": {
                "summary": alert.summary,
                "description": "\n".join(description),
                "stable_version": alert.stable_version or "",
                "canary_version": alert.canary_version or "",
                "weight": str(alert.weight),
            },
            "startsAt": _rfc3339(now),
        }
        if alert.resolved:
            body["endsAt"] = _rfc3339(now)
        elif self.ttl is not None:
            body["endsAt"] = _rfc3339(now + timedelta(seconds=self.ttl))
        if self.generator_url:
            body["generatorURL"] = self.generator_url
        return [body]

    def send(self, alert: Alert) -> None:
        self.client.request(self.payload(alert))


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
