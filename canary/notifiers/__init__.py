"""Notifiers registered by name, and delivery that never blocks a rollout."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from canary.errors import ConfigError, unknown_name
from canary.notifiers.alertmanager import AlertmanagerNotifier
from canary.notifiers.base import Alert, Notifier
from canary.notifiers.discord import DiscordNotifier
from canary.notifiers.email import EmailNotifier
from canary.notifiers.log import LogNotifier
from canary.notifiers.pagerduty import PagerDutyNotifier
from canary.notifiers.slack import SlackNotifier
from canary.notifiers.teams import TeamsNotifier
from canary.notifiers.webhook import WebhookNotifier

log = logging.getLogger(__name__)

NOTIFIERS: dict[str, type[Any]] = {
    "log": LogNotifier,
    "webhook": WebhookNotifier,
    "slack": SlackNotifier,
    "alertmanager": AlertmanagerNotifier,
    "teams": TeamsNotifier,
    "discord": DiscordNotifier,
    "pagerduty": PagerDutyNotifier,
    "email": EmailNotifier,
}


def notifier_options(kind: str) -> type[BaseModel]:
    """The options model of the notifier registered as ``kind``; unknown names list the known ones."""
    cls = NOTIFIERS.get(kind)
    if cls is None:
        raise unknown_name("notifier", kind, list(NOTIFIERS))
    model: type[BaseModel] = cls.Options
    return model


def build_notifier(kind: str, options: Mapping[str, Any] | None = None) -> Notifier:
    """The notifier registered as ``kind``; unknown names list the known ones."""
    notifier_options(kind)
    try:
        notifier: Notifier = NOTIFIERS[kind](**(options or {}))
    except TypeError as exc:
        raise ConfigError(f"notifier {kind}: {exc}") from None
    return notifier


def deliver(notifiers: Iterable[Notifier], alert: Alert) -> list[str]:
    """Send to every channel; a channel that fails is logged and skipped, never raised.

    Returns the names of the channels that failed, so the caller can record it.
    """
    failed = []
    for n in notifiers:
        try:
            n.send(alert)
        except Exception as exc:  # a broken channel must never block a rollback
            log.warning("notifier %s failed for %s: %s", n.name, alert.dedupe_key, exc)
            failed.append(n.name)
    return failed


__all__ = ["NOTIFIERS", "Alert", "Notifier", "build_notifier", "deliver", "notifier_options"]
