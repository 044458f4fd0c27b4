"""What every part of the rollout core works with: the Context, the Dispatcher, the rollout's router."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from canary.rollout.config import PluginSpec, RolloutConfig
from canary.rollout.windows import BatchSpec
from canary.routers import RouteContext, Router, build_router
from canary.store import Store


class Dispatcher(Protocol):
    """Schedules the tasks that carry a rollout forward (Celery in production)."""

    def probe(self, batches: Sequence[BatchSpec], queue: str) -> None:
        """Send a step's probe batches that go to ``queue`` (at once: one message may carry
        them all, to be fanned out on the probe side)."""
        ...

    def analyze(self, rollout_id: str, window: str, countdown: float) -> None: ...

    def check(self, rollout_id: str, window: str, countdown: float) -> None: ...

    def advance(self, rollout_id: str, step: int, attempt: int, countdown: float) -> None: ...


@dataclass
class Context:
    """What the controller works with: the store, the dispatcher, the clock and the probe queues."""

    store: Store
    dispatcher: Dispatcher
    now: Callable[[], float] = time.time
    queue_prefix: str = "canary.probe"
    routers: dict[str, Router] = field(default_factory=dict)


def router_for(ctx: Context, spec: PluginSpec) -> Router:
    """The router a rollout's config names, built once per process and options."""
    options = spec.options()
    key = json.dumps({"type": spec.type, **options}, sort_keys=True, default=str)
    if key not in ctx.routers:
        ctx.routers[key] = build_router(spec.type, options)
    return ctx.routers[key]


def route_context(rollout_id: str, service: str, config: RolloutConfig, step: int) -> RouteContext:
    """What a router is told about the rollout it moves traffic for."""
    return RouteContext(
        rollout_id=rollout_id,
        service=service,
        stable=config.stable.model_dump(mode="json"),
        canary=config.canary.model_dump(mode="json"),
        step=step,
    )


class NullDispatcher:
    """Schedules nothing: for callers that only end rollouts (fail_safe) or read them."""

    def probe(self, batches: Sequence[BatchSpec], queue: str) -> None: ...

    def analyze(self, rollout_id: str, window: str, countdown: float) -> None: ...

    def check(self, rollout_id: str, window: str, countdown: float) -> None: ...

    def advance(self, rollout_id: str, step: int, attempt: int, countdown: float) -> None: ...
