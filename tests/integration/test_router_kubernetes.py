"""The kubernetes router against a local HTTP server speaking the Kubernetes API for the two
objects it uses (an HTTPRoute, a Deployment), through a real kubeconfig and lightkube.

No real API server can run here, so every HTTPRoute the router writes is also checked against
the Gateway API's published schema, as shipped in the npm package @kubernetes-models/gateway-api
(installed on first use into the virtualenv; node and npm are needed).
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from canary.errors import ConfigError, RouterError
from canary.routers import RouteContext, build_router

pytestmark = pytest.mark.integration

GATEWAY_API_NPM = "@kubernetes-models/gateway-api@2.0.0"
ROUTE_PATH = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/shop"
DEPLOYMENT_PATH = "/apis/apps/v1/namespaces/shop/deployments/shop-canary"
TOKEN = "kube-test-token-0123"
CTX = RouteContext(
    "shop-7",
    "shop",
    {"url": "http://shop-stable", "version": "1.0.0", "image": "registry/shop:1.0.0"},
    {"url": "http://shop-canary", "version": "1.1.0", "image": "registry/shop:1.1.0"},
)


def _route() -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "shop", "namespace": "shop", "labels": {"app": "shop"}},
        "spec": {
            "parentRefs": [{"name": "public"}],
            "hostnames": ["shop.example.com"],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [
                        {"name": "shop-stable", "port": 8080, "weight": 100},
                        {"name": "shop-canary", "port": 8080, "weight": 0},
                    ],
                }
            ],
        },
    }


def _deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "shop-canary", "namespace": "shop"},
        "spec": {
            "selector": {"matchLabels": {"app": "shop", "track": "canary"}},
            "template": {
                "metadata": {"labels": {"app": "shop", "track": "canary"}},
                "spec": {
                    "containers": [
                        {"name": "shop", "image": "registry/shop:1.0.0"},
                        {"name": "proxy", "image": "envoy:1.30"},
                    ]
                },
            },
        },
    }


class FakeKubeAPI:
    """GET and PUT of stored objects with resourceVersion checks, like the API server's."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.writes: list[tuple[str, dict[str, Any]]] = []
        self.auth: list[str] = []
        self.lock = threading.Lock()
        # A callable run just before the next PUT is applied: another writer racing us.
        self.before_write: Any = None
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                api.auth.append(self.headers.get("Authorization", ""))
                with api.lock:
                    obj = api.objects.get(self.path.split("?")[0])
                    if obj is None:
                        return self._status(404, "NotFound", f"{self.path} not found")
                    self._send(200, obj)

            def do_PUT(self) -> None:
                api.auth.append(self.headers.get("Authorization", ""))
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                path = self.path.split("?")[0]
                with api.lock:
                    if api.before_write is not None:
                        hook, api.before_write = api.before_write, None
                        hook(api)
                    stored = api.objects.get(path)
                    if stored is None:
                        return self._status(404, "NotFound", f"{path} not found")
                    api.writes.append((path, copy.deepcopy(body)))
                    have = stored["metadata"]["resourceVersion"]
                    if body.get("metadata", {}).get("resourceVersion") != have:
                        return self._status(409, "Conflict", "the object has been modified")
                    api.store(path, body)
                    self._send(200, api.objects[path])

            def _status(self, code: int, reason: str, message: str) -> None:
                status = {"kind": "Status", "apiVersion": "v1", "metadata": {}}
                status.update(status="Failure", message=message, reason=reason, code=code)
                self._send(code, status)

            def _send(self, code: int, obj: dict[str, Any]) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def store(self, path: str, obj: dict[str, Any]) -> None:
        """Keep ``obj`` as the API server would: a new resourceVersion, generation on change."""
        old = self.objects.get(path)
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        version = int(old["metadata"]["resourceVersion"]) + 1 if old else 1
        meta["resourceVersion"] = str(version)
        generation = old["metadata"]["generation"] if old else 1
        if old and old.get("spec") != obj.get("spec"):
            generation += 1
        meta["generation"] = generation
        if old and "status" in old:
            obj["status"] = old["status"]  # PUT to the main resource never changes status
        self.objects[path] = obj

    def route_writes(self) -> list[dict[str, Any]]:
        return [body for path, body in self.writes if path == ROUTE_PATH]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def kube(tmp_path: Path) -> Iterator[tuple[FakeKubeAPI, Path]]:
    api = FakeKubeAPI()
    api.store(ROUTE_PATH, _route())
    api.store(DEPLOYMENT_PATH, _deployment())
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "test", "cluster": {"server": api.url}}],
                "users": [{"name": "canary", "user": {"token": TOKEN}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "canary"}}],
                "current-context": "test",
            }
        )
    )
    try:
        yield api, kubeconfig
    finally:
        api.close()


@pytest.fixture(scope="session")
def gateway_schema() -> Path:
    """A directory with the npm package installed and validate.mjs, which checks HTTPRoutes."""
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.fail("node and npm are needed to check HTTPRoutes against the Gateway API schema")
    where = Path(sys.prefix) / "gateway-api-schema"
    package = where / "node_modules" / "@kubernetes-models" / "gateway-api"
    if not package.is_dir():
        where.mkdir(exist_ok=True)
        npm = ["npm", "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(where)]
        proc = subprocess.run(
            [*npm, GATEWAY_API_NPM],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0:
            pytest.fail(f"npm install {GATEWAY_API_NPM} failed:\n{proc.stderr[-2000:]}")
    (where / "validate.mjs").write_text(
        'import { HTTPRoute } from "@kubernetes-models/gateway-api/'
        'gateway.networking.k8s.io/v1/HTTPRoute";\n'
        'import { readFileSync } from "node:fs";\n'
        "const routes = JSON.parse(readFileSync(0, 'utf8'));\n"
        "const errors = [];\n"
        "routes.forEach((r, i) => { try { new HTTPRoute(r).validate(); }"
        " catch (e) { errors.push(`route ${i}: ${e.message}`); } });\n"
        "console.log(JSON.stringify(errors));\n"
    )
    return where


def schema_errors(schema_dir: Path, routes: list[dict[str, Any]]) -> list[str]:
    """What the published schema says about ``routes`` (empty when all are valid)."""
    proc = subprocess.run(
        ["node", str(schema_dir / "validate.mjs")],
        input=json.dumps(routes),
        capture_output=True,
        text=True,
        cwd=schema_dir,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    errors: list[str] = json.loads(proc.stdout)
    return errors


def _router(kubeconfig: Path, **options: Any) -> Any:
    base = {
        "route": "shop",
        "namespace": "shop",
        "stable_service": "shop-stable",
        "canary_service": "shop-canary",
        "kubeconfig": str(kubeconfig),
        "timeout": 5,
    }
    return build_router("kubernetes", {**base, **options})


def _weights(route: dict[str, Any], rule: int = 0) -> dict[str, int]:
    return {r["name"]: r["weight"] for r in route["spec"]["rules"][rule]["backendRefs"]}


def test_weights_are_set_and_read_back(
    kube: tuple[FakeKubeAPI, Path], gateway_schema: Path
) -> None:
    api, kubeconfig = kube
    router = _router(kubeconfig)
    router.set_weight(10, CTX)
    assert _weights(api.objects[ROUTE_PATH]) == {"shop-stable": 90, "shop-canary": 10}
    assert router.verify_weight(10, CTX) is True
    assert router.verify_weight(25, CTX) is False
    router.promote(CTX)
    assert _weights(api.objects[ROUTE_PATH]) == {"shop-stable": 0, "shop-canary": 100}
    router.rollback(CTX)
    assert _weights(api.objects[ROUTE_PATH]) == {"shop-stable": 100, "shop-canary": 0}
    # Everything else in the route is left as it was; every request carried the credential.
    route = api.objects[ROUTE_PATH]
    assert route["metadata"]["labels"] == {"app": "shop"}
    assert route["spec"]["hostnames"] == ["shop.example.com"]
    assert set(api.auth) == {f"Bearer {TOKEN}"}
    writes = api.route_writes()
    assert len(writes) == 3
    assert schema_errors(gateway_schema, writes) == []


def test_the_schema_check_would_catch_a_bad_route(gateway_schema: Path) -> None:
    bad = _route()
    bad["spec"]["rules"][0]["backendRefs"][1]["weight"] = -5
    bad["spec"]["rules"][0]["backendRefs"][0]["weight"] = "90"
    errors = schema_errors(gateway_schema, [bad])
    assert len(errors) == 1 and "weight" in errors[0]


def test_a_pin_header_sends_probes_to_one_version(
    kube: tuple[FakeKubeAPI, Path], gateway_schema: Path
) -> None:
    api, kubeconfig = kube
    router = _router(kubeconfig, pin_header="X-Canary-Pin")
    router.set_weight(5, CTX)
    router.set_weight(20, CTX)
    rules = api.objects[ROUTE_PATH]["spec"]["rules"]
    # The weighted rule first, then one rule per version; a second call did not add more.
    assert len(rules) == 3
    assert _weights(api.objects[ROUTE_PATH]) == {"shop-stable": 80, "shop-canary": 20}
    pinned = {
        r["matches"][0]["headers"][0]["value"]: [b["name"] for b in r["backendRefs"]]
        for r in rules[1:]
    }
    assert pinned == {"stable": ["shop-stable"], "canary": ["shop-canary"]}
    assert rules[1]["matches"][0]["path"] == {"type": "PathPrefix", "value": "/"}
    assert router.verify_weight(20, CTX) is True
    assert schema_errors(gateway_schema, api.route_writes()) == []


def test_a_concurrent_edit_is_retried_on_fresh_data_not_overwritten(
    kube: tuple[FakeKubeAPI, Path],
) -> None:
    api, kubeconfig = kube

    def someone_else(server: FakeKubeAPI) -> None:
        route = copy.deepcopy(server.objects[ROUTE_PATH])
        route["metadata"]["labels"]["team"] = "checkout"
        server.store(ROUTE_PATH, route)

    api.before_write = someone_else
    _router(kubeconfig).set_weight(30, CTX)
    route = api.objects[ROUTE_PATH]
    assert _weights(route) == {"shop-stable": 70, "shop-canary": 30}
    assert route["metadata"]["labels"] == {"app": "shop", "team": "checkout"}
    assert len(api.route_writes()) == 2  # the first was refused with 409


def test_the_canary_deployment_gets_the_image_and_version_first(
    kube: tuple[FakeKubeAPI, Path],
) -> None:
    api, kubeconfig = kube
    router = _router(kubeconfig, canary_deployment="shop-canary", container="shop")
    router.set_weight(0, CTX)
    dep = api.objects[DEPLOYMENT_PATH]
    containers = {c["name"]: c["image"] for c in dep["spec"]["template"]["spec"]["containers"]}
    assert containers == {"shop": "registry/shop:1.1.0", "proxy": "envoy:1.30"}
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/version"] == "1.1.0" and labels["track"] == "canary"
    # The Deployment was written before the route.
    assert [path for path, _ in api.writes] == [DEPLOYMENT_PATH, ROUTE_PATH]
    # Later steps find the image in place and leave the Deployment alone.
    router.set_weight(10, CTX)
    assert [path for path, _ in api.writes][2:] == [ROUTE_PATH]


def test_a_deployment_with_several_containers_needs_one_named(
    kube: tuple[FakeKubeAPI, Path],
) -> None:
    _, kubeconfig = kube
    with pytest.raises(RouterError, match=r"name the container to set \(containers: shop, proxy\)"):
        _router(kubeconfig, canary_deployment="shop-canary").set_weight(0, CTX)


def test_a_route_refused_by_its_gateway_does_not_verify(kube: tuple[FakeKubeAPI, Path]) -> None:
    api, kubeconfig = kube
    router = _router(kubeconfig)
    router.set_weight(10, CTX)
    route = api.objects[ROUTE_PATH]
    route["status"] = {
        "parents": [
            {
                "parentRef": {"name": "public"},
                "controllerName": "example.com/gateway",
                "conditions": [
                    {
                        "type": "ResolvedRefs",
                        "status": "False",
                        "reason": "BackendNotFound",
                        "message": "service shop-canary not found",
                        "observedGeneration": route["metadata"]["generation"],
                    }
                ],
            }
        ]
    }
    assert router.verify_weight(10, CTX) is False


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"canary_service": "shop-next"}, "has no backendRef shop-next"),
        ({"route": "cart"}, "get httproute shop/cart: 404 NotFound"),
        ({"rule": 3}, "has no rule 3"),
    ],
)
def test_what_cannot_be_found_is_a_router_error(
    kube: tuple[FakeKubeAPI, Path], options: dict[str, Any], message: str
) -> None:
    _, kubeconfig = kube
    with pytest.raises(RouterError, match=message):
        _router(kubeconfig, **options).set_weight(10, CTX)


def test_an_unreachable_api_server_is_a_router_error(
    kube: tuple[FakeKubeAPI, Path], tmp_path: Path
) -> None:
    api, kubeconfig = kube
    router = _router(kubeconfig)
    api.close()
    with pytest.raises(RouterError, match="API server unreachable"):
        router.set_weight(10, CTX)
    with pytest.raises(RouterError, match="no usable cluster configuration"):
        _router(tmp_path / "missing-kubeconfig").set_weight(10, CTX)


VS_PATH = "/apis/networking.istio.io/v1/namespaces/shop/virtualservices/shop"


def _virtual_service() -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "shop", "namespace": "shop"},
        "spec": {
            "hosts": ["shop.example.com"],
            "http": [
                {
                    "route": [
                        {"destination": {"host": "shop", "subset": "stable"}, "weight": 100},
                        {"destination": {"host": "shop", "subset": "canary"}, "weight": 0},
                    ]
                }
            ],
        },
    }


def test_an_istio_virtual_service_by_subsets(kube: tuple[FakeKubeAPI, Path]) -> None:
    """Istio is optional: its objects are not checked against a published schema here."""
    api, kubeconfig = kube
    api.store(VS_PATH, _virtual_service())
    router = _router(kubeconfig, api="istio", stable_service="stable", canary_service="canary")
    router.set_weight(25, CTX)
    route = api.objects[VS_PATH]["spec"]["http"][0]["route"]
    assert [(r["destination"]["subset"], r["weight"]) for r in route] == [
        ("stable", 75),
        ("canary", 25),
    ]
    assert router.verify_weight(25, CTX) is True and router.verify_weight(30, CTX) is False
    router.rollback(CTX)
    assert [r["weight"] for r in api.objects[VS_PATH]["spec"]["http"][0]["route"]] == [100, 0]
    with pytest.raises(RouterError, match="has no destination next"):
        _router(kubeconfig, api="istio", stable_service="stable", canary_service="next").set_weight(
            5, CTX
        )
    with pytest.raises(ConfigError, match="pin_header works with api: gateway only"):
        _router(kubeconfig, api="istio", pin_header="X-Canary-Pin")
