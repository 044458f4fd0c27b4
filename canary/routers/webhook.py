"""The webhook router: each action is one JSON POST to a URL the operator's tooling serves."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from canary.errors import RouterError
from canary.http_out import HttpClient, HttpURL, secret_from_env
from canary.plugins import Options, parse_options
from canary.routers.base import RouteContext, check_weight

log = logging.getLogger(__name__)


class WebhookOptions(Options):
    """The ``router:`` block of ``type: webhook``."""

    url: HttpURL
    verify_url: HttpURL | None = None
    secret_env: str | None = None
    secret_header: str = "X-Canary-Token"
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(default=5.0, gt=0)
    retries: int = Field(default=3, ge=0)
    backoff: float = Field(default=0.5, ge=0)


class WebhookRouter:
    """POSTs ``{"action", "weight", "stable_weight", "rollout_id", "service", "step", "stable",
    "canary", "timestamp"}`` to ``url``; any 2xx means done. Retries network errors and 5xx.

    Each call carries an ``Idempotency-Key`` header (same action, weight and step → same key) so
    a receiver can ignore a retried request it already applied. ``verify_url``, when given, is
    read with GET and must answer ``{"weight": <canary percent>}``.
    """

    name = "webhook"

    Options = WebhookOptions

    def __init__(self, **options: Any) -> None:
        o = parse_options(WebhookOptions, options, "router webhook")
        secret = secret_from_env(o.secret_env, "router webhook")
        self.client = HttpClient(
            o.url,
            "router webhook",
            RouterError,
            timeout=o.timeout,
            retries=o.retries,
            backoff=o.backoff,
            headers=dict(o.headers),
            secret_headers={o.secret_header: secret} if secret else {},
        )
        self.verify_url = o.verify_url
        if o.verify_url:
            self.client.redact.add_url(o.verify_url)

    def payload(self, action: str, weight: int, ctx: RouteContext) -> dict[str, Any]:
        def version(block: dict[str, Any]) -> dict[str, Any]:
            return {k: block.get(k) for k in ("url", "version", "image")}

        return {
            "action": action,
            "weight": weight,
            "stable_weight": 100 - weight,
            "rollout_id": ctx.rollout_id,
            "service": ctx.service,
            "step": ctx.step,
            "stable": version(ctx.stable),
            "canary": version(ctx.canary),
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def _post(self, action: str, weight: int, ctx: RouteContext) -> None:
        check_weight(weight)
        key = f"{ctx.rollout_id}:{ctx.step}:{action}:{weight}"
        self.client.request(self.payload(action, weight, ctx), headers={"Idempotency-Key": key})
        log.info("webhook router: %s to %d%% accepted", action, weight)

    def set_weight(self, weight: int, ctx: RouteContext) -> None:
        self._post("set_weight", weight, ctx)

    def verify_weight(self, weight: int, ctx: RouteContext) -> bool | None:
        check_weight(weight)
        if not self.verify_url:
            return None
        resp = self.client.request(None, method="GET", url=self.verify_url)
        try:
            live = resp.json()["weight"]
        except (ValueError, KeyError, TypeError):
            raise RouterError(
                'router webhook: verify_url must answer JSON like {"weight": 25}'
            ) from None
        if isinstance(live, bool) or not isinstance(live, int | float):
            raise RouterError(f"router webhook: verify_url's weight {live!r} is not a number")
        return live == weight

    def promote(self, ctx: RouteContext) -> None:
        self._post("promote", 100, ctx)

    def rollback(self, ctx: RouteContext) -> None:
        self._post("rollback", 0, ctx)
