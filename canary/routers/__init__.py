"""Routers registered by name; ``build_router`` turns a config block into one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from canary.errors import ConfigError, unknown_name
from canary.routers.base import RouteContext, Router
from canary.routers.command import CommandRouter
from canary.routers.haproxy import HAProxyRouter
from canary.routers.kubernetes import KubernetesRouter
from canary.routers.nginx import NginxRouter
from canary.routers.noop import NoopRouter
from canary.routers.webhook import WebhookRouter

ROUTERS: dict[str, type[Any]] = {
    "noop": NoopRouter,
    "haproxy": HAProxyRouter,
    "nginx": NginxRouter,
    "command": CommandRouter,
    "webhook": WebhookRouter,
    "kubernetes": KubernetesRouter,
}


def router_options(kind: str) -> type[BaseModel]:
    """The options model of the router registered as ``kind``; unknown names list the known ones."""
    cls = ROUTERS.get(kind)
    if cls is None:
        raise unknown_name("router", kind, list(ROUTERS))
    model: type[BaseModel] = cls.Options
    return model


def build_router(kind: str, options: Mapping[str, Any] | None = None) -> Router:
    """The router registered as ``kind`` built with ``options``; unknown names list the known ones."""
    router_options(kind)
    try:
        router: Router = ROUTERS[kind](**(options or {}))
    except TypeError as exc:
        raise ConfigError(f"router {kind}: {exc}") from None
    return router


__all__ = ["ROUTERS", "RouteContext", "Router", "build_router", "router_options"]
