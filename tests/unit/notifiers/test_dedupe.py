"""The time-window dedupe helper and the notifier wrapper built on it."""

from __future__ import annotations

import pytest

from canary.errors import NotifierError
from canary.notifiers import Alert
from canary.notifiers.dedupe import Deduped, DedupeWindow


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Recorder:
    name = "rec"

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.fail = False

    def send(self, alert: Alert) -> None:
        if self.fail:
            raise NotifierError("down")
        self.sent.append(alert.dedupe_key)


def _alert(kind: str = "rollback") -> Alert:
    return Alert(kind, "r1", "shop", "1", "2", 5, "s")  # type: ignore[arg-type]


def test_window_admits_a_key_once_per_window() -> None:
    clock = _Clock()
    window = DedupeWindow(60, clock=clock)
    assert window.admit("a") and not window.admit("a") and window.admit("b")
    clock.now = 59.9
    assert not window.admit("a")
    clock.now = 60.0
    assert window.admit("a")


def test_window_memory_is_bounded() -> None:
    clock = _Clock()
    window = DedupeWindow(1000, max_keys=3, clock=clock)
    for key in "abcde":
        clock.now += 1
        assert window.admit(key)
    assert len(window._seen) == 3
    assert window.admit("a")  # forgotten, so admitted again


def test_deduped_drops_repeats_but_retries_after_a_failure() -> None:
    inner = _Recorder()
    notifier = Deduped(inner, DedupeWindow(300, clock=_Clock()))
    notifier.send(_alert())
    notifier.send(_alert())
    notifier.send(_alert("stuck"))
    assert inner.sent == ["r1:rollback", "r1:stuck"]
    inner.fail = True
    with pytest.raises(NotifierError):
        notifier.send(_alert("failure"))
    inner.fail = False
    notifier.send(_alert("failure"))
    assert inner.sent[-1] == "r1:failure"
