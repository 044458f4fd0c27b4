"""The log notifier: alerts written to the `canary.alerts` logger."""

from __future__ import annotations

import logging
from typing import Any

from canary.notifiers.base import Alert

log = logging.getLogger("canary.alerts")

_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.ERROR}


class LogNotifier:
    """Writes each alert as one log line with its reasons."""

    name = "log"

    def __init__(self, **options: Any) -> None:
        self.options = options

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
