"""The notifier registry and delivery that never raises."""

from __future__ import annotations

import logging

import pytest

from canary.errors import ConfigError, NotifierError
from canary.notifiers import Alert, build_notifier, deliver


def _alert() -> Alert:
    return Alert(
        "rollback", "r1", "shop", "1.0", "1.1", 10, "rolled back", ["checkout failing"], "critical"
    )


def test_log_notifier_writes_reasons(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="canary.alerts"):
        deliver([build_notifier("log")], _alert())
    assert "checkout failing" in caplog.text and "r1" in caplog.text


def test_a_broken_channel_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        name = "broken"

        def send(self, alert: Alert) -> None:
            raise NotifierError("down")

    with caplog.at_level(logging.INFO):
        failed = deliver([Broken(), build_notifier("log")], _alert())
    assert failed == ["broken"]
    assert "rolled back" in caplog.text


def test_unknown_notifier_lists_known_ones() -> None:
    with pytest.raises(
        ConfigError,
        match="known notifiers: alertmanager, discord, email, log, pagerduty, slack, teams, webhook",
    ):
        build_notifier("pager")
