"""Links an alert carries: the rollout's dashboard page and report, and signed promote/abort links.

The base URL is ``CANARY_DASHBOARD_URL`` (no links without it). Promote and abort links carry a
token — an HMAC of the rollout id, the action and an expiry time, keyed with
``CANARY_ACTION_SECRET`` — so whoever holds the message can act on that one rollout, for that
one action, until the token expires (``CANARY_ACTION_TTL`` seconds, one hour by default), and
nobody can forge one for another rollout. The link opens the rollout's dashboard page with
``?action=ACTION&token=TOKEN``; the page asks to confirm and POSTs the token, so link previews
and mail scanners that fetch URLs never act. ``check_action_token`` is the dashboard's check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from canary.notifiers.base import Alert

BASE_ENV = "CANARY_DASHBOARD_URL"
SECRET_ENV = "CANARY_ACTION_SECRET"
TTL_ENV = "CANARY_ACTION_TTL"
DEFAULT_TTL = 3600.0
ACTIONS = ("promote", "abort")
# Kinds sent once a rollout has ended: there is nothing left to promote or abort.
_FINAL = frozenset({"rollback", "promotion", "failure", "predicted_breach"})


@dataclass(frozen=True, slots=True)
class Link:
    """One link of an alert: what a button or a line says, where it goes, and its weight."""

    text: str
    url: str
    style: str = ""  # "primary" or "danger" where a channel can show it


@dataclass(frozen=True, slots=True)
class Links:
    """The links of one alert; empty when no dashboard is configured."""

    dashboard: Link | None = None
    report: Link | None = None
    actions: tuple[Link, ...] = ()

    def all(self) -> list[Link]:
        return [link for link in (self.dashboard, self.report) if link] + list(self.actions)


def _sign(secret: str, rollout_id: str, action: str, expires: int) -> str:
    message = f"canary-action:v1:{rollout_id}:{action}:{expires}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def action_token(secret: str, rollout_id: str, action: str, expires: float) -> str:
    """A token allowing ``action`` on ``rollout_id`` until ``expires`` (a Unix time)."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}")
    when = int(expires)
    return f"{when}.{_sign(secret, rollout_id, action, when)}"


def check_action_token(
    secret: str, token: str, rollout_id: str, action: str, now: float | None = None
) -> bool:
    """Whether ``token`` allows ``action`` on ``rollout_id`` now (unexpired, not forged)."""
    if not secret or action not in ACTIONS:
        return False
    when, _, signature = str(token).partition(".")
    if not when.isdigit() or not signature:
        return False
    if int(when) < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(signature, _sign(secret, rollout_id, action, int(when)))


def links_for(
    alert: Alert, environ: dict[str, str] | None = None, now: float | None = None
) -> Links:
    """The links ``alert`` should carry, from the environment of the sending process."""
    env = os.environ if environ is None else environ
    base = env.get(BASE_ENV, "").strip().rstrip("/")
    if not base.startswith(("http://", "https://")):
        return Links()
    page = f"{base}/rollouts/{quote(alert.rollout_id, safe='')}"
    dashboard = Link("Dashboard", page)
    report = Link("Report", f"{page}/report")
    secret = env.get(SECRET_ENV, "")
    if not secret or alert.kind in _FINAL or alert.resolved:
        return Links(dashboard, report)
    try:
        ttl = float(env.get(TTL_ENV) or DEFAULT_TTL)
    except ValueError:
        ttl = DEFAULT_TTL
    expires = (time.time() if now is None else now) + max(ttl, 60.0)
    actions = tuple(
        Link(
            action.title(),
            f"{page}?{urlencode({'action': action, 'token': action_token(secret, alert.rollout_id, action, expires)})}",
            "primary" if action == "promote" else "danger",
        )
        for action in ACTIONS
    )
    return Links(dashboard, report, actions)
