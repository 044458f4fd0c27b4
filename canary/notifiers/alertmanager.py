"""The Alertmanager notifier: alerts pushed to Prometheus Alertmanager's v2 API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from canary.errors import NotifierError
from canary.http_out import HttpClient, secret_from_env
from canary.notifiers.base import Alert


class AlertmanagerNotifier:
    """POSTs each alert to ``<url>/api/v2/alerts``; resolved alerts carry ``endsAt``.

    Labels identify the alert (alertname, severity, rollout, service, plus ``labels``); versions,
    weight and reasons go in the annotations so they do not split one alert into many. A firing
    alert gets ``endsAt`` = now + ``ttl`` when ``ttl`` is set, else Alertmanager's resolve_timeout
    applies. ``bearer_token_env`` names a variable holding a token for an authenticating proxy.
    """

    name = "alertmanager"

    def __init__(
        self,
        url: str,
        *,
        labels: dict[str, str] | None = None,
        generator_url: str | None = None,
        ttl: float | None = None,
        bearer_token_env: str | None = None,
        timeout: float = 5.0,
        retries: int = 2,
        backoff: float = 0.5,
    ) -> None:
        token = secret_from_env(bearer_token_env, "notifier alertmanager")
        self.labels = {str(k): str(v) for k, v in (labels or {}).items()}
        self.generator_url = generator_url
        self.ttl = float(ttl) if ttl is not None else None
        self.client = HttpClient(
            url.rstrip("/") + "/api/v2/alerts",
            "notifier alertmanager",
            NotifierError,
            timeout=float(timeout),
            retries=int(retries),
            backoff=float(backoff),
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
