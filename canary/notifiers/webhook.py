"""The webhook notifier: each alert POSTed as JSON to a URL of the operator's choosing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from canary.http_out import HttpURL, secret_from_env
from canary.notifiers.base import Alert, HttpOptions
from canary.plugins import parse_options


class WebhookOptions(HttpOptions):
    """A ``notifiers:`` entry of ``type: webhook``."""

    url: HttpURL
    secret_env: str | None = None
    secret_header: str = "X-Canary-Token"
    headers: dict[str, str] = Field(default_factory=dict)


class WebhookNotifier:
    """POSTs ``Alert.to_dict()`` plus ``timestamp`` and ``dedupe_key``; 2xx means delivered.

    The secret header's value is read from the environment variable named by ``secret_env``.
    """

    name = "webhook"

    Options = WebhookOptions

    def __init__(self, **options: Any) -> None:
        o = parse_options(WebhookOptions, options, "notifier webhook")
        secret = secret_from_env(o.secret_env, "notifier webhook")
        self.client = o.client(
            o.url,
            "notifier webhook",
            headers=dict(o.headers),
            secret_headers={o.secret_header: secret} if secret else {},
        )

    def payload(self, alert: Alert) -> dict[str, Any]:
        return {
            **alert.to_dict(),
            "dedupe_key": alert.dedupe_key,
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def send(self, alert: Alert) -> None:
        self.client.request(self.payload(alert))
