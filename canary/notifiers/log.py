"""The log notifier: alerts written to the `canary.alerts` logger."""

from __future__ import annotations

import logging
from typing import Any

from canary.notifiers.base import Alert
from canary.plugins import Options, parse_options

log = logging.getLogger("canary.alerts")

_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.ERROR}


class LogOptions(Options):
    """The log channel takes no options."""


class LogNotifier:
    """Writes each alert as one log line with its reasons."""

    name = "log"
    Options = LogOptions

    def __init__(self, **options: Any) -> None:
        parse_options(LogOptions, options, "notifier log")

    def send(self, alert: Alert) -> None:
        reasons = "; ".join(alert.reasons)
        log.log(
            _LEVELS[alert.severity],
            "[%s] %s %s (canary %s at %d%%): %s%s",
            alert.kind,
            alert.service,
            alert.rollout_id,
            alert.canary_version or "?",
            alert.weight,
            alert.summary,
            f" — {reasons}" if reasons else "",
        )
