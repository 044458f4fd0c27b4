"""The webhook notifier: each alert POSTed as JSON to a URL of the operator's choosing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from canary.errors import NotifierError
from canary.http_out import HttpClient, secret_from_env
from canary.notifiers.base import Alert


class WebhookNotifier:
    """POSTs ``Alert.to_dict()`` plus ``timestamp`` and ``dedupe_key``; 2xx means delivered.

    The secret header's value is read from the environment variable named by ``secret_env``.
    """

    name = "webhook"

    def __init__(
        self,
        url: str,
        *,
        secret_env: str | None = None,
        secret_header: str = "X-Canary-Token",
        headers: dict[str, str] | None = None,
        timeout: float = 5.0,
        retries: int = 2,
        backoff: float = 0.5,
    ) -> None:
        secret = secret_from_env(secret_env, "notifier webhook")
        self.client = HttpClient(
            url,
            "notifier webhook",
            NotifierError,
            timeout=float(timeout),
            retries=int(retries),
            backoff=float(backoff),
            headers=dict(headers or {}),
            secret_headers={secret_header: secret} if secret else {},
        )

    def payload(self, alert: Alert) -> dict[str, Any]:
        return {
            **alert.to_dict(),
            "dedupe_key": alert.dedupe_key,
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def send(self, alert: Alert) -> None:
        self.client.request(self.payload(alert))
