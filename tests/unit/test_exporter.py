"""The exporter's pieces that need no Redis: histogram buckets and per-version gauges."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

from canary.exporter import LATENCY_BUCKETS, RolloutCollector, _histogram
from canary.probing.result import TransactionResult


def _samples(family: GaugeMetricFamily | HistogramMetricFamily) -> dict[tuple[str, ...], float]:
    return {(s.name, *s.labels.values()): s.value for s in family.samples}


def test_histogram_buckets_are_cumulative_and_in_seconds() -> None:
    family = HistogramMetricFamily("h", "help", labels=["version"])
    results = [TransactionResult(0.0, "canary", "t", True, ms) for ms in (5, 30, 30, 700, 20_000)]
    _histogram(family, ["canary"], results)
    got = _samples(family)
    assert got[("h_bucket", "canary", "0.01")] == 1
    assert got[("h_bucket", "canary", "0.05")] == 3
    assert got[("h_bucket", "canary", "1.0")] == 4
    assert got[("h_bucket", "canary", str(LATENCY_BUCKETS[-1]))] == 4
    assert got[("h_bucket", "canary", "+Inf")] == 5
    assert got[("h_count", "canary")] == 5
    assert abs(got[("h_sum", "canary")] - 20.765) < 1e-9


def test_empty_window_still_has_a_histogram() -> None:
    family = HistogramMetricFamily("h", "help", labels=["version"])
    _histogram(family, ["stable"], [])
    assert _samples(family)[("h_count", "stable")] == 0


def test_version_stats_convert_percent_and_ms_and_skip_missing() -> None:
    success = GaugeMetricFamily("s", "h", labels=["rollout", "version"])
    latency = GaugeMetricFamily("l", "h", labels=["rollout", "version", "quantile"])
    samples = GaugeMetricFamily("n", "h", labels=["rollout", "version"])
    stats = {"n": 40, "success_rate": 97.5, "p50_ms": 40.0, "p95_ms": None}
    RolloutCollector._version_stats(["r"], "canary", stats, success, latency, samples)
    RolloutCollector._version_stats(["r"], "stable", {"n": 0}, success, latency, samples)
    RolloutCollector._version_stats(["r"], "stable", None, success, latency, samples)
    assert _samples(success) == {("s", "r", "canary"): 0.975}
    assert _samples(latency) == {("l", "r", "canary", "0.5"): 0.04}
    assert _samples(samples) == {("n", "r", "canary"): 40, ("n", "r", "stable"): 0}
