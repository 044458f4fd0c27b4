"""Pacing of a probe batch over its window."""

from __future__ import annotations

from canary.fleet import LATE_LIMIT_S, late_limit, probe_offsets
from canary.rollout.controller import window_position


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
