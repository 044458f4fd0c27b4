"""Results as the store keeps them: to_dict is asdict, field for field, and round-trips."""

from __future__ import annotations

import dataclasses
import json

from canary.probing.result import StepResult, TransactionResult


def _result(steps: int) -> TransactionResult:
    return TransactionResult(
        t=1700000000.25,
        version="canary",
        transaction="checkout",
        ok=steps % 2 == 0,
        latency_ms=12.5,
        status=503 if steps else None,
        error="step 1: status 503" if steps % 2 else None,
        steps=[
            StepResult(
                name=f"step {i}",
                method="POST",
                url=f"http://shop/{i}",
                ok=i % 2 == 0,
                latency_ms=1.25 * i,
                status=None if i == 3 else 200,
                error="timeout" if i == 3 else None,
                attempt=i + 1,
                size_bytes=None if i == 3 else 10 * i,
                truncated=i == 2,
            )
            for i in range(steps)
        ],
    )


def test_to_dict_is_asdict() -> None:
    for steps in range(5):
        result = _result(steps)
        whole = dataclasses.asdict(result)
        assert json.dumps(result.to_dict()) == json.dumps(whole)  # same keys, same order
        whole.pop("steps")
        assert json.dumps(result.to_dict(with_steps=False)) == json.dumps(whole)
        assert TransactionResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
