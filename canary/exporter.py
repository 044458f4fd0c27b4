"""Prometheus exporter: rollout state, weight, per-version metrics and decision counts from Redis."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from canary.probing.result import TransactionResult
from canary.rollout.progress import Progress
from canary.rollout.state import FINAL
from canary.store import Store

log = logging.getLogger(__name__)

STATES = ("running", "paused", *sorted(FINAL))
ACTIONS = ("increase", "hold", "promote", "rollback")
VERSIONS = ("stable", "canary")
# Latency buckets in seconds: synthetic transactions run from tens of ms to several seconds.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DEFAULT_LIMIT = 50


@dataclass
class _Tally:
    """What a rollout's event stream said so far; read incrementally so scrapes stay cheap."""

    after: str = "0-0"
    decisions: Counter[str] = field(default_factory=Counter)
    predictive: int = 0
    alerts: Counter[str] = field(default_factory=Counter)
    last_decision: dict[str, Any] | None = None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class RolloutCollector(Collector):
    """Builds every metric at scrape time from the store (the exporter holds no state but tallies)."""

    def __init__(self, store: Store, *, limit: int = DEFAULT_LIMIT) -> None:
        self.store = store
        self.limit = limit
        self._tallies: dict[str, _Tally] = {}
        self._lock = threading.Lock()

    def _tally(self, rollout_id: str) -> _Tally:
        tally = self._tallies.setdefault(rollout_id, _Tally())
        while True:
            events = self.store.read_events(rollout_id, tally.after, count=500)
            for eid, ev in events:
                tally.after = eid
                data = ev.get("data") or {}
                if ev["type"] == "decision":
                    tally.decisions[str(data.get("action"))] += 1
                    tally.predictive += bool(data.get("predictive"))
                    tally.last_decision = data
                elif ev["type"] == "alert":
                    tally.alerts[str(data.get("kind", "unknown"))] += 1
            if len(events) < 500:
                return tally

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("canary_store_up", "1 when the exporter could read Redis")
        try:
            with self._lock:
                families = self._families()
        except Exception as exc:  # a scrape must answer even when Redis is away
            log.warning("cannot read rollouts: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> list[Metric]:
        base = ["rollout", "service"]
        info = GaugeMetricFamily(
            "canary_rollout_info",
            "Rollout labels (always 1)",
            labels=[*base, "name", "stable_version", "canary_version"],
        )
        state = GaugeMetricFamily(
            "canary_rollout_state", "1 for the rollout's current state", labels=[*base, "state"]
        )
        weight = GaugeMetricFamily(
            "canary_rollout_weight_percent", "Traffic share of the canary", labels=base
        )
        step = GaugeMetricFamily(
            "canary_rollout_step", "Current step, counted from 1 as the CLI shows it", labels=base
        )
        steps = GaugeMetricFamily("canary_rollout_steps", "Number of steps", labels=base)
        created = GaugeMetricFamily(
            "canary_rollout_created_timestamp_seconds", "When the rollout was created", labels=base
        )
        failures = GaugeMetricFamily(
            "canary_rollout_canary_failures",
            "Failed canary transactions over the rollout",
            labels=base,
        )
        vlabels = [*base, "version"]
        success = GaugeMetricFamily(
            "canary_version_success_ratio",
            "Success ratio of each version in the last judged window",
            labels=vlabels,
        )
        latency = GaugeMetricFamily(
            "canary_version_latency_seconds",
            "Latency quantiles of each version in the last judged window",
            labels=[*vlabels, "quantile"],
        )
        samples = GaugeMetricFamily(
            "canary_version_samples",
            "Transactions of each version in the last judged window",
            labels=vlabels,
        )
        hist = HistogramMetricFamily(
            "canary_window_latency_seconds",
            "Latency of each version's transactions in the current window",
            labels=vlabels,
        )
        window_results = GaugeMetricFamily(
            "canary_window_results",
            "Results of each version in the current window",
            labels=[*vlabels, "outcome"],
        )
        decisions = CounterMetricFamily(
            "canary_decisions", "Decisions taken, by action", labels=[*base, "action"]
        )
        predictive = CounterMetricFamily(
            "canary_predictive_decisions", "Decisions caused by a forecast", labels=base
        )
        alerts = CounterMetricFamily(
            "canary_alerts", "Alerts sent, by kind", labels=[*base, "kind"]
        )

        records = self.store.list_rollouts(self.limit)
        seen = {r["id"] for r in records}
        # Rollouts that fell out of the listing (expired or capped) need no tally any more.
        for gone in set(self._tallies) - seen:
            del self._tallies[gone]
        for rec in records:
            rid, svc = str(rec["id"]), str(rec.get("service") or rec.get("name") or "")
            labels = [rid, svc]
            cfg = rec.get("config") or {}
            info.add_metric(
                [
                    *labels,
                    str(rec.get("name") or ""),
                    str((cfg.get("stable") or {}).get("version") or ""),
                    str((cfg.get("canary") or {}).get("version") or ""),
                ],
                1,
            )
            for s in STATES:
                state.add_metric([*labels, s], 1 if rec.get("state") == s else 0)
            weight.add_metric(labels, float(rec.get("weight") or 0))
            progress = Progress.of(rec)
            step.add_metric(labels, float(progress.number))
            steps.add_metric(labels, float(progress.total))
            created.add_metric(labels, float(rec.get("created_at") or 0))
            failures.add_metric(labels, float(rec.get("canary_failures") or 0))

            tally = self._tally(rid)
            for action in ACTIONS:
                decisions.add_metric([*labels, action], tally.decisions.get(action, 0))
            predictive.add_metric(labels, tally.predictive)
            for kind, count in sorted(tally.alerts.items()):
                alerts.add_metric([*labels, kind], count)
            metrics = (tally.last_decision or {}).get("metrics") or {}
            for version in VERSIONS:
                self._version_stats(
                    labels, version, metrics.get(version), success, latency, samples
                )

            window = rec.get("window")
            if window:
                results = self.store.window_results(rid, str(window))
                for version in VERSIONS:
                    mine = [r for r in results if r.version == version]
                    _histogram(hist, [*labels, version], mine)
                    ok = sum(1 for r in mine if r.ok)
                    window_results.add_metric([*labels, version, "ok"], ok)
                    window_results.add_metric([*labels, version, "failed"], len(mine) - ok)
        return [
            info,
            state,
            weight,
            step,
            steps,
            created,
            failures,
            success,
            latency,
            samples,
            hist,
            window_results,
            decisions,
            predictive,
            alerts,
        ]

    @staticmethod
    def _version_stats(
        labels: list[str],
        version: str,
        stats: Any,
        success: GaugeMetricFamily,
        latency: GaugeMetricFamily,
        samples: GaugeMetricFamily,
    ) -> None:
        if not isinstance(stats, dict):
            return
        n = _num(stats.get("n"))
        if n is not None:
            samples.add_metric([*labels, version], n)
        rate = _num(stats.get("success_rate"))
        if rate is not None:
            success.add_metric([*labels, version], rate / 100.0)  # Stats rates are percent
        for q, key in (("0.5", "p50_ms"), ("0.95", "p95_ms")):
            ms = _num(stats.get(key))
            if ms is not None:
                latency.add_metric([*labels, version, q], ms / 1000.0)


def _histogram(
    family: HistogramMetricFamily, labels: list[str], results: Iterable[TransactionResult]
) -> None:
    seconds = sorted(r.latency_ms / 1000.0 for r in results)
    buckets: list[tuple[str, float]] = []
    i = 0
    for bound in LATENCY_BUCKETS:
        while i < len(seconds) and seconds[i] <= bound:
            i += 1
        buckets.append((str(bound), float(i)))
    buckets.append(("+Inf", float(len(seconds))))
    family.add_metric(labels, buckets, sum_value=sum(seconds))


def build_registry(store: Store, *, limit: int = DEFAULT_LIMIT) -> CollectorRegistry:
    """A registry holding only canary's metrics (no process metrics of the exporter itself)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RolloutCollector(store, limit=limit))
    return registry


def serve(
    store: Store, *, host: str = "127.0.0.1", port: int = 9808, limit: int = DEFAULT_LIMIT
) -> tuple[WSGIServer, threading.Thread]:
    """Serve /metrics in a background thread; call ``server.shutdown()`` to stop."""
    server, thread = start_http_server(port, addr=host, registry=build_registry(store, limit=limit))
    return server, thread
