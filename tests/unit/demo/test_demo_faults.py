"""Unit tests of the demo service's fault decisions."""

from __future__ import annotations

from typing import Any

import pytest

from canary.demo.faults import BrokenEndpoint, Faults


def test_no_faults_by_default() -> None:
    faults = Faults()
    assert not any(faults.should_fail() for _ in range(1000))
    assert faults.delay_seconds() == 0.0
    assert faults.broken_mode("checkout") is None


def test_error_rate_is_roughly_the_fraction_asked_and_seeded() -> None:
    draws = [Faults(error_rate=0.2, seed=7).should_fail() for _ in range(1)]
    assert draws == [Faults(error_rate=0.2, seed=7).should_fail()]
    faults = Faults(error_rate=0.2, seed=7)
    failures = sum(faults.should_fail() for _ in range(10_000))
    assert 1800 <= failures <= 2200
    assert all(Faults(error_rate=1.0).should_fail() for _ in range(100))


def test_latency_has_a_little_jitter_around_the_value() -> None:
    faults = Faults(latency_ms=100, seed=1)
    delays = [faults.delay_seconds() for _ in range(1000)]
    assert all(0.09 <= d <= 0.11 for d in delays)
    assert len(set(delays)) > 100
    assert 0.099 <= sum(delays) / len(delays) <= 0.101


def test_latency_grows_linearly_with_time_since_start() -> None:
    faults = Faults(latency_growth_ms_per_s=50)
    start = faults.started
    assert faults.delay_seconds(now=start) == 0.0
    assert faults.delay_seconds(now=start + 2) == pytest.approx(0.1)
    assert faults.delay_seconds(now=start + 10) == pytest.approx(0.5)


def test_broken_endpoint_parsing() -> None:
    assert BrokenEndpoint.parse("checkout") == BrokenEndpoint("checkout", "500")
    assert BrokenEndpoint.parse("checkout:body") == BrokenEndpoint("checkout", "body")
    with pytest.raises(ValueError, match=r"known endpoints: .*checkout"):
        BrokenEndpoint.parse("chekout")
    with pytest.raises(ValueError, match="known modes"):
        BrokenEndpoint.parse("checkout:slow")
    faults = Faults(broken=(BrokenEndpoint("search", "body"),))
    assert faults.broken_mode("search") == "body"
    assert faults.broken_mode("checkout") is None


@pytest.mark.parametrize("kwargs", [{"error_rate": 1.5}, {"error_rate": -0.1}, {"latency_ms": -1}])
def test_invalid_faults_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Faults(**kwargs)


def test_saturation_grows_with_the_users_rate_beyond_capacity() -> None:
    faults = Faults(user_capacity_rps=2.5, overload_ms_per_rps=100, overload_errors_per_rps=0.1)
    now = 1000.0
    for i in range(4):  # 2 requests/s over the 2 s window: under capacity
        faults.user_request(now - i * 0.5)
    assert faults.overload(now) == 0 and faults.delay_seconds(now) == 0
    for i in range(4):  # 4 requests/s: 1.5 over
        faults.user_request(now - i * 0.5 - 0.25)
    assert faults.overload(now) == pytest.approx(1.5)
    assert faults.delay_seconds(now) == pytest.approx(0.15)
    assert sum(faults.should_fail(now) for _ in range(2000)) == pytest.approx(300, abs=60)
    # Old requests leave the window; without a capacity nothing is counted at all.
    assert faults.overload(now + 5) == 0
    unlimited = Faults()
    unlimited.user_request(now)
    assert unlimited.overload(now) == 0
