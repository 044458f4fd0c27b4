"""The kubernetes router: weights of a Gateway API HTTPRoute's backendRefs, read back to verify.

It talks to the API server through lightkube: it reads the route, changes the two backends'
weights in one rule (and keeps optional header-matched rules that pin a probe to one version),
and writes the whole route back with the ``resourceVersion`` it read, so an edit made meanwhile
by someone else is a conflict that is retried on fresh data, never overwritten. It can also set
the canary Deployment's container image and version label before any traffic moves.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from pydantic import Field, model_validator

from canary.errors import RouterError
from canary.plugins import Options, parse_options
from canary.routers.base import RouteContext, check_weight

log = logging.getLogger(__name__)

GROUP = "gateway.networking.k8s.io"
ISTIO_GROUP = "networking.istio.io"
# Conflicting writers (a GitOps sync, a second coordinator) get this many fresh reads.
_CONFLICT_RETRIES = 3
T = TypeVar("T")


class KubernetesOptions(Options):
    """The ``router:`` block of ``type: kubernetes``."""

    route: str = Field(description="The HTTPRoute's (or Istio VirtualService's) name.")
    api: Literal["gateway", "istio"] = Field(
        default="gateway", description="gateway: an HTTPRoute; istio: a VirtualService."
    )
    namespace: str = "default"
    stable_service: str = Field(description="The stable version's Service (a backendRef name).")
    canary_service: str = Field(description="The canary version's Service (a backendRef name).")
    rule: int = Field(default=0, ge=0, description="Index of the rule holding both backendRefs.")
    pin_header: str | None = Field(
        default=None,
        description="Header whose value 'stable' or 'canary' sends a request to that version.",
    )
    canary_deployment: str | None = Field(
        default=None, description="Deployment whose image becomes the rollout's canary.image."
    )
    container: str | None = Field(
        default=None, description="The container to set (default: the Deployment's only one)."
    )
    version_label: str = "app.kubernetes.io/version"
    kubeconfig: str | None = Field(
        default=None, description="Path of a kubeconfig; default: in-cluster, then $KUBECONFIG."
    )
    context: str | None = None
    timeout: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _distinct(self) -> KubernetesOptions:
        if self.stable_service == self.canary_service:
            raise ValueError("stable_service and canary_service must differ")
        if self.container and not self.canary_deployment:
            raise ValueError("container needs canary_deployment")
        if self.pin_header and self.api == "istio":
            raise ValueError("pin_header works with api: gateway only")
        return self


class KubernetesRouter:
    """Stable's backendRef gets weight ``100 - w``, canary's ``w`` (Gateway API weights are
    relative, so the canary gets ``w``% of the rule's requests)."""

    name = "kubernetes"
    Options = KubernetesOptions

    def __init__(self, **options: Any) -> None:
        self.o = parse_options(KubernetesOptions, options, "router kubernetes")
        self.kind = "virtualservice" if self.o.api == "istio" else "httproute"
        self._client: Any = None

    # --- the API ------------------------------------------------------------------------------

    def client(self) -> Any:
        """The lightkube client, made on first use (building the router must not need a cluster)."""
        if self._client is None:
            import httpx2
            from lightkube import Client, KubeConfig
            from lightkube.core.exceptions import ConfigError as KubeConfigError

            try:
                config = (
                    KubeConfig.from_file(self.o.kubeconfig)
                    if self.o.kubeconfig
                    else KubeConfig.from_env()
                )
                self._client = Client(
                    config.get(context_name=self.o.context),
                    namespace=self.o.namespace,
                    timeout=httpx2.Timeout(self.o.timeout),
                    field_manager="canary",
                    trust_env=False,
                )
            except (KubeConfigError, OSError, ValueError) as exc:
                raise RouterError(f"kubernetes: no usable cluster configuration: {exc}") from None
        return self._client

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """``fn()`` with the API's errors as RouterErrors that say what was being done."""
        import httpx2
        from lightkube import ApiError

        try:
            return fn()
        except ApiError as exc:
            if exc.status.code == 409:
                raise _Conflict() from None
            raise RouterError(
                f"kubernetes: {what}: {exc.status.code} {exc.status.reason}: {exc.status.message}"
            ) from None
        except httpx2.HTTPError as exc:
            raise RouterError(
                f"kubernetes: {what}: API server unreachable ({type(exc).__name__}: {exc})"
            ) from None

    def _route_resource(self) -> Any:
        from lightkube.generic_resource import create_namespaced_resource

        if self.o.api == "istio":
            return create_namespaced_resource(
                ISTIO_GROUP, "v1", "VirtualService", "virtualservices"
            )
        return create_namespaced_resource(GROUP, "v1", "HTTPRoute", "httproutes")

    def read_route(self) -> dict[str, Any]:
        """The route as the API server holds it, as plain JSON."""
        res = self._route_resource()
        route = self._call(
            f"get {self.kind} {self.o.namespace}/{self.o.route}",
            lambda: self.client().get(res, self.o.route, namespace=self.o.namespace),
        )
        return _plain(route)

    def _update(
        self, what: str, resource: Any, name: str, change: Callable[[dict[str, Any]], None]
    ) -> None:
        """Read ``name``, apply ``change`` to its JSON, write it back; retried on a conflict."""
        where = f"{self.o.namespace}/{name}"
        for attempt in range(1, _CONFLICT_RETRIES + 1):
            current = _plain(
                self._call(
                    f"get {what} {where}",
                    lambda: self.client().get(resource, name, namespace=self.o.namespace),
                )
            )
            change(current)
            replace = functools.partial(self.client().replace, resource.from_dict(current))
            try:
                self._call(f"replace {what} {where}", replace)
                return
            except _Conflict:
                log.info("kubernetes: %s %s changed meanwhile (attempt %d)", what, where, attempt)
        raise RouterError(
            f"kubernetes: {what} {where} kept changing under us ({_CONFLICT_RETRIES} conflicts)"
        )

    # --- the route ----------------------------------------------------------------------------

    def _set_route(self, weight: int) -> None:
        self._update(
            self.kind, self._route_resource(), self.o.route, lambda r: self._weigh(r, weight)
        )
        log.info("kubernetes: %s %s canary weight %d%%", self.kind, self.o.route, weight)

    def _weigh(self, route: dict[str, Any], weight: int) -> None:
        rules = self._rules(route)
        refs = self._refs(rules[self.o.rule])
        refs[self.o.stable_service]["weight"] = 100 - weight
        refs[self.o.canary_service]["weight"] = weight
        if self.o.pin_header:
            self._pin(rules, refs)

    def _pin(self, rules: list[dict[str, Any]], refs: dict[str, dict[str, Any]]) -> None:
        """Keep one rule per version matching ``pin_header: <version>`` and sending only there.

        A header match is more specific than the weighted rule's, so the Gateway picks it first.
        """
        header = self.o.pin_header or ""
        kept = [r for r in rules if not _pins(r, header)]
        base = rules[self.o.rule]
        for version, service in (
            ("stable", self.o.stable_service),
            ("canary", self.o.canary_service),
        ):
            ref = {k: v for k, v in refs[service].items() if k != "weight"}
            matches = [
                {**m, "headers": [*m.get("headers", []), _header(header, version)]}
                for m in base.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]
            ]
            kept.append({"matches": matches, "backendRefs": [{**ref, "weight": 1}]})
        rules[:] = kept

    def _rules(self, route: dict[str, Any]) -> list[dict[str, Any]]:
        # An HTTPRoute's rules; a VirtualService's http routes.
        rules = (route.get("spec") or {}).get("http" if self.o.api == "istio" else "rules")
        if not isinstance(rules, list) or len(rules) <= self.o.rule:
            raise RouterError(
                f"kubernetes: {self.kind} {self.o.namespace}/{self.o.route} has no rule "
                f"{self.o.rule} (it has {len(rules) if isinstance(rules, list) else 0})"
            )
        return rules

    def _refs(self, rule: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The rule's weighted entries by name: backendRefs by name, or Istio destinations by
        host (or subset, for one host with stable and canary subsets)."""
        refs: dict[str, dict[str, Any]] = {}
        if self.o.api == "istio":
            for entry in rule.get("route") or []:
                dest = entry.get("destination") or {}
                for key in (dest.get("subset"), dest.get("host")):
                    if key:
                        refs.setdefault(str(key), entry)
        else:
            refs = {str(ref.get("name")): ref for ref in rule.get("backendRefs") or []}
        missing = [s for s in (self.o.stable_service, self.o.canary_service) if s not in refs]
        if missing:
            what = "destination" if self.o.api == "istio" else "backendRef"
            raise RouterError(
                f"kubernetes: {self.kind} {self.o.namespace}/{self.o.route} rule {self.o.rule} "
                f"has no {what} {', '.join(missing)} (it has {', '.join(refs) or 'none'})"
            )
        return refs

    # --- the deployment -----------------------------------------------------------------------

    def _deploy_canary(self, ctx: RouteContext) -> None:
        if not self.o.canary_deployment:
            return
        image = ctx.canary.get("image")
        if not image:
            raise RouterError(
                "kubernetes: canary_deployment is set but the rollout's canary has no image"
            )
        from lightkube.resources.apps_v1 import Deployment

        version = ctx.canary.get("version")

        def change(dep: dict[str, Any]) -> None:
            template = dep.setdefault("spec", {}).setdefault("template", {})
            containers = template.setdefault("spec", {}).get("containers") or []
            chosen = (
                [c for c in containers if c.get("name") == self.o.container]
                if self.o.container
                else containers
            )
            if len(chosen) != 1:
                names = ", ".join(str(c.get("name")) for c in containers) or "none"
                raise RouterError(
                    f"kubernetes: deployment {self.o.canary_deployment}: name the container "
                    f"to set (containers: {names})"
                    if not self.o.container
                    else f"kubernetes: deployment {self.o.canary_deployment} has no container "
                    f"{self.o.container!r} (containers: {names})"
                )
            chosen[0]["image"] = str(image)
            if version:
                for meta in (dep.setdefault("metadata", {}), template.setdefault("metadata", {})):
                    meta.setdefault("labels", {})[self.o.version_label] = str(version)

        self._update("deployment", Deployment, self.o.canary_deployment, change)
        log.info("kubernetes: deployment %s image %s", self.o.canary_deployment, image)

    def _canary_is_deployed(self, ctx: RouteContext) -> bool:
        from lightkube.resources.apps_v1 import Deployment

        dep = _plain(
            self._call(
                f"get deployment {self.o.namespace}/{self.o.canary_deployment}",
                lambda: self.client().get(
                    Deployment, self.o.canary_deployment, namespace=self.o.namespace
                ),
            )
        )
        containers = ((dep.get("spec") or {}).get("template") or {}).get("spec", {}).get(
            "containers"
        ) or []
        return any(c.get("image") == ctx.canary.get("image") for c in containers)

    # --- the protocol -------------------------------------------------------------------------

    def set_weight(self, weight: int, ctx: RouteContext) -> None:
        check_weight(weight)
        if self.o.canary_deployment and (weight == 0 or not self._canary_is_deployed(ctx)):
            # Before the canary gets traffic (the isolated check runs at weight 0).
            self._deploy_canary(ctx)
        self._set_route(weight)

    def verify_weight(self, weight: int, ctx: RouteContext) -> bool | None:
        check_weight(weight)
        route = self.read_route()
        refs = self._refs(self._rules(route)[self.o.rule])
        # Without a weight a backendRef counts 1; an Istio destination 0 (unless it is alone).
        default = 0 if self.o.api == "istio" else 1
        live = (
            refs[self.o.stable_service].get("weight", default),
            refs[self.o.canary_service].get("weight", default),
        )
        if live != (100 - weight, weight):
            log.warning(
                "kubernetes: %s %s weights %s, want %s",
                self.kind,
                self.o.route,
                live,
                (100 - weight, weight),
            )
            return False
        return not _refused(route)

    def promote(self, ctx: RouteContext) -> None:
        self._set_route(100)

    def rollback(self, ctx: RouteContext) -> None:
        self._set_route(0)


class _Conflict(Exception):
    """The object changed between our read and our write (HTTP 409)."""


def _plain(obj: Any) -> dict[str, Any]:
    data: dict[str, Any] = obj.to_dict()
    return data


def _header(name: str, value: str) -> dict[str, str]:
    return {"type": "Exact", "name": name, "value": value}


def _pins(rule: dict[str, Any], header: str) -> bool:
    """Whether ``rule`` is one of the pinning rules this router writes."""
    return any(
        h.get("name", "").lower() == header.lower()
        for m in rule.get("matches") or []
        for h in m.get("headers") or []
    )


def _refused(route: dict[str, Any]) -> bool:
    """True when a Gateway has judged this generation of the route and refused it."""
    generation = (route.get("metadata") or {}).get("generation")
    for parent in ((route.get("status") or {}).get("parents")) or []:
        for cond in parent.get("conditions") or []:
            current = generation is None or cond.get("observedGeneration") in (None, generation)
            if (
                cond.get("type") in ("Accepted", "ResolvedRefs")
                and cond.get("status") == "False"
                and current
            ):
                log.warning("kubernetes: route not %s: %s", cond.get("type"), cond.get("message"))
                return True
    return False
