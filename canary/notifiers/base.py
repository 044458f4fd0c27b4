"""The Notifier protocol and the Alert every channel receives."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import Field, model_validator

from canary.errors import NotifierError
from canary.http_out import HttpClient, HttpURL, secret_from_env
from canary.plugins import Options

AlertKind = Literal[
    "rollback",
    "promotion",
    "error_budget",
    "predicted_breach",
    "stuck",
    "failure",
    "stable_unhealthy",
    "starved",
]


@dataclass(frozen=True, slots=True)
class Alert:
    """One thing operators should hear about, with the numbers behind it."""

    kind: AlertKind
    rollout_id: str
    service: str
    stable_version: str | None
    canary_version: str | None
    weight: int
    summary: str
    reasons: list[str] = field(default_factory=list)
    severity: Literal["info", "warning", "critical"] = "warning"
    # True when the condition is over (Alertmanager then gets an endsAt and closes the alert).
    resolved: bool = False

    @property
    def dedupe_key(self) -> str:
        return f"{self.rollout_id}:{self.kind}" + (":resolved" if self.resolved else "")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class HttpOptions(Options):
    """Options every HTTP channel shares."""

    timeout: float = Field(default=5.0, gt=0, description="seconds per attempt")
    retries: int = Field(default=2, ge=0, description="extra attempts")
    backoff: float = Field(default=0.5, ge=0, description="first delay; doubles each time")

    def client(self, url: str, what: str, **settings: Any) -> HttpClient:
        """The channel's HTTP client: these timeouts and retries, failures as NotifierError."""
        return HttpClient(
            url,
            what,
            NotifierError,
            timeout=self.timeout,
            retries=self.retries,
            backoff=self.backoff,
            **settings,
        )


class WebhookURLOptions(HttpOptions):
    """Options of a channel whose webhook URL is its credential (Slack, Teams, Discord)."""

    webhook_url_env: str | None = Field(
        default=None, description="Variable holding the webhook URL (preferred)."
    )
    webhook_url: HttpURL | None = Field(
        default=None, description="The URL itself, if it must be in the file."
    )

    @model_validator(mode="after")
    def _one_url(self) -> WebhookURLOptions:
        if not (self.webhook_url or self.webhook_url_env):
            raise ValueError("set webhook_url_env (or webhook_url)")
        return self

    def url(self, what: str) -> str:
        """The webhook URL: from the environment when ``webhook_url_env`` names a variable."""
        return secret_from_env(self.webhook_url_env, what) or self.webhook_url or ""

    def webhook_client(self, what: str) -> HttpClient:
        """The client that posts to the webhook URL (whose path and query stay secret)."""
        return self.client(self.url(what), what)


@runtime_checkable
class Notifier(Protocol):
    """Delivers alerts; raises NotifierError when the channel cannot be reached."""

    name: str

    def send(self, alert: Alert) -> None: ...
