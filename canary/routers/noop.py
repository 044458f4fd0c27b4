"""The noop router: moves no traffic; for trying rollouts out and for synthetic-only checks."""

from __future__ import annotations

from typing import Any

from canary.plugins import Options, parse_options
from canary.routers.base import RouteContext


class NoopOptions(Options):
    """The noop router takes no options."""


class NoopRouter:
    """Accepts every weight and cannot tell what the live weight is."""

    name = "noop"
    Options = NoopOptions

    def __init__(self, **options: Any) -> None:
        parse_options(NoopOptions, options, "router noop")

    def set_weight(self, weight: int, ctx: RouteContext) -> None:
        return None

    def verify_weight(self, weight: int, ctx: RouteContext) -> bool | None:
        return None

    def promote(self, ctx: RouteContext) -> None:
        return None

    def rollback(self, ctx: RouteContext) -> None:
        return None
