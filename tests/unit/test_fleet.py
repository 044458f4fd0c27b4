"""Pacing of a probe batch over its window, and recording it while Redis is away."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest

from canary import fleet
from canary.errors import StoreError
from canary.fleet import LATE_LIMIT_S, late_limit, probe_offsets
from canary.rollout.controller import window_position
from canary.store import Store


def test_batches_interleave_over_the_window() -> None:
    # 10 probes in 2 batches over 10 s: batch 0 takes even slots, batch 1 odd ones.
    a = probe_offsets(0, 2, 5, 10, 10.0)
    b = probe_offsets(1, 2, 5, 10, 10.0)
    assert a == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert b == [1.0, 3.0, 5.0, 7.0, 9.0]
    assert sorted(a + b) == [float(i) for i in range(10)]


def test_windows_order_by_step_then_attempt() -> None:
    assert window_position("s3a1") == (3, 1)
    assert window_position("s10a0") > window_position("s9a4")


def test_late_limit_allows_two_spacings_never_less_than_the_floor() -> None:
    assert late_limit(0.0, 10) == float("inf")  # an unpaced batch is never late
    assert late_limit(10.0, 10) == LATE_LIMIT_S
    assert late_limit(60.0, 6) == 20.0


class _AwayStore:
    """A store whose record call fails while Redis is "away" for its first ``away`` calls."""

    def __init__(self, away: int) -> None:
        self.away = away
        self.calls = 0

    def record_batch_status(self, *args: Any, **kwargs: Any) -> int:
        self.calls += 1
        if self.calls <= self.away:
            raise StoreError("cannot record batch b1: Connection refused")
        return 3


_SPEC = {"rollout_id": "r1", "window": "s0a0", "batch_id": "b1"}


def _clocked() -> tuple[list[float], Callable[[float], None], Callable[[], float]]:
    waits: list[float] = []
    return waits, waits.append, lambda: sum(waits)


def test_a_record_waits_out_redis_with_doubling_backoff() -> None:
    store = _AwayStore(away=6)
    waits, sleep, clock = _clocked()
    status = fleet._record(cast(Store, store), _SPEC, [], {}, sleep=sleep, clock=clock)
    assert status == 3 and store.calls == 7
    assert waits == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0]


def test_a_record_gives_up_once_redis_stays_away_past_the_deadline() -> None:
    store = _AwayStore(away=10_000)
    waits, sleep, clock = _clocked()
    with pytest.raises(StoreError):
        fleet._record(cast(Store, store), _SPEC, [], {}, sleep=sleep, clock=clock)
    assert sum(waits) <= fleet.RECORD_RETRY_S
    assert sum(waits) + 5.0 >= fleet.RECORD_RETRY_S


def test_wakes_come_faster_only_while_most_canary_runs_fail() -> None:
    # A hard failure wakes a check with every probe; a canary failing now and then keeps the
    # slower pace, which bounds what its failures cost the control process.
    assert fleet.wake_gap(4, 4) == fleet.wake_gap(2, 1) == fleet.FAST_WAKE_GAP_S
    assert fleet.wake_gap(10, 1) == fleet.wake_gap(0, 0) == fleet.WAKE_GAP_S
    assert fleet.FAST_WAKE_GAP_S < fleet.WAKE_GAP_S
