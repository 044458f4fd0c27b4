"""Synthetic TransactionResults with fixed seeds for the analysis tests (fixture ``synth``)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from canary.analysis.decision import JudgeInput
from canary.analysis.slo import SLO
from canary.probing.result import TransactionResult


def runs(
    rng: np.random.Generator,
    version: str,
    transaction: str,
    n: int,
    *,
    error_rate: float = 0.005,
    median_ms: float = 100.0,
    sigma: float = 0.3,
    t0: float = 0.0,
    span_s: float = 60.0,
) -> list[TransactionResult]:
    """n runs with Bernoulli failures and lognormal latency, spread over span_s seconds."""
    ok = rng.random(n) >= error_rate
    lat = median_ms * np.exp(sigma * rng.standard_normal(n))
    t = t0 + np.sort(rng.random(n)) * span_s
    return [
        TransactionResult(
            t=float(t[i]),
            version=version,
            transaction=transaction,
            ok=bool(ok[i]),
            latency_ms=float(lat[i]),
            status=200 if ok[i] else 500,
            error=None if ok[i] else "expected status 200, got 500",
        )
        for i in range(n)
    ]


def history(
    rng: np.random.Generator,
    transactions: list[str],
    *,
    buckets: int = 30,
    per_bucket: int = 20,
    bucket_s: float = 60.0,
    error_rate: float = 0.005,
    median_ms: float = 100.0,
) -> list[TransactionResult]:
    """Stable history before t = 0."""
    out: list[TransactionResult] = []
    for b in range(buckets):
        t0 = -(buckets - b) * bucket_s
        for txn in transactions:
            out += runs(
                rng,
                "stable",
                txn,
                per_bucket,
                error_rate=error_rate,
                median_ms=median_ms,
                t0=t0,
                span_s=bucket_s,
            )
    return out


def step_input(
    canary: list[TransactionResult],
    stable: list[TransactionResult],
    transactions: list[str],
    *,
    hist: list[TransactionResult] | None = None,
    slo: SLO | None = None,
    weight: int = 20,
    max_weight: int = 100,
    holds: int = 0,
    max_holds: int = 3,
    cumulative_canary_failures: int | None = None,
) -> JudgeInput:
    failures = sum(1 for r in canary if not r.ok)
    return JudgeInput(
        canary=canary,
        stable=stable,
        history=hist or [],
        cumulative_canary_failures=(
            failures if cumulative_canary_failures is None else cumulative_canary_failures
        ),
        slo=slo or SLO(),
        weight=weight,
        max_weight=max_weight,
        step_index=1,
        holds=holds,
        max_holds=max_holds,
        transactions=transactions,
    )


@pytest.fixture
def synth() -> SimpleNamespace:
    """The builders above; a fixture because the suite imports test modules in importlib mode."""
    return SimpleNamespace(runs=runs, history=history, step_input=step_input)
