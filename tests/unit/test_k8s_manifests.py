"""configs/kubernetes validated offline: core kinds against Kubernetes' schemas, the rest against ours.

No API server runs here. Core kinds (Deployment, Service, ...) are checked strictly with the
kubernetes-validate package; Argo Rollouts, Flagger, ServiceMonitor and Kustomization with the
schemas we wrote for the fields we use (tests/unit/k8s/crd-schemas.yaml). Then the manifests
are checked against canary itself: every command parses, every Service finds its pods, the
gate's bodies are ones the gate accepts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from canary.cli.main import build_parser
from canary.gate.app import DEFAULT_HOOK_WAIT_S
from canary.gate.argo import VerdictBody
from canary.gate.config import GateConfig
from canary.gate.flagger import HOOKS, FlaggerPayload
from canary.settings import load_settings
from canary.transactions import load_transaction

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "configs" / "kubernetes"
K8S_VERSION = "1.30.0"
CRDS = yaml.safe_load((Path(__file__).parent / "k8s" / "crd-schemas.yaml").read_text())
FILES = sorted(K8S.rglob("*.yaml"))
DOCS = [(f, d) for f in FILES for d in yaml.safe_load_all(f.read_text()) if d]
WORKLOADS = ("Deployment", "StatefulSet")


def _id(item: tuple[Path, dict[str, Any]]) -> str:
    path, doc = item
    return f"{path.relative_to(K8S)}:{doc['kind']}/{doc.get('metadata', {}).get('name', '')}"


def _of(kind: str, folder: str | None = None) -> list[dict[str, Any]]:
    return [d for f, d in DOCS if d["kind"] == kind and (folder is None or f.parent.name == folder)]


def _named(kind: str, name: str) -> dict[str, Any]:
    return next(d for d in _of(kind) if d["metadata"]["name"] == name)


def test_the_files_are_there() -> None:
    names = {str(f.relative_to(K8S)) for f in FILES}
    assert {
        "argo/analysis-template.yaml",
        "argo/rollout.yaml",
        "flagger/canary.yaml",
        "fleet/kustomization.yaml",
        "fleet/redis.yaml",
        "fleet/gate.yaml",
        "fleet/probe.yaml",
        "fleet/exporter.yaml",
    } <= names


@pytest.mark.parametrize("item", DOCS, ids=[_id(i) for i in DOCS])
def test_every_document_validates(item: tuple[Path, dict[str, Any]]) -> None:
    _path, doc = item
    key = f"{doc['apiVersion']}/{doc['kind']}"
    if key in CRDS["kinds"]:
        schema = {"$defs": CRDS["$defs"], **CRDS["kinds"][key]}
        jsonschema.validate(doc, schema)
    else:
        # Strict: an unknown field is an error, as `kubectl apply --validate=strict` says.
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_rollouts_pod_template_is_a_valid_pod_template() -> None:
    rollout = _of("Rollout")[0]
    as_deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": rollout["metadata"]["name"]},
        "spec": {"selector": rollout["spec"]["selector"], "template": rollout["spec"]["template"]},
    }
    kubernetes_validate.validate(as_deployment, K8S_VERSION, strict=True)


def test_schemas_refuse_a_typo() -> None:
    template = _of("AnalysisTemplate")[0]
    bad = {**template, "spec": {**template["spec"], "metricz": []}}
    schema = {"$defs": CRDS["$defs"], **CRDS["kinds"]["argoproj.io/v1alpha1/AnalysisTemplate"]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    deployment = _named("Deployment", "canary-probe")
    typo = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, K8S_VERSION, strict=True)


def test_kustomization_lists_every_fleet_file() -> None:
    kustomization = _of("Kustomization")[0]
    fleet = {f.name for f in (K8S / "fleet").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == fleet


# --- the fleet against canary itself -----------------------------------------------------------


def _containers(
    kind: str = "", folder: str = "fleet"
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [
        (w, c)
        for k in WORKLOADS
        if not kind or k == kind
        for w in _of(k, folder)
        for c in w["spec"]["template"]["spec"]["containers"]
    ]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env") or []}


@pytest.mark.parametrize(
    "pair", [p for p in _containers() if p[1]["image"] == "canary"], ids=lambda p: p[1]["name"]
)
def test_every_canary_command_exists(pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
    _workload, container = pair
    argv = [str(a) for a in container["command"]]
    settings = load_settings()
    if argv[0] == "celery":
        assert argv[1:3] == ["-A", "workers.app:app"]
        if argv[3] == "worker":
            queues = set(argv[argv.index("-Q") + 1].split(","))
            assert queues <= {settings.control_queue, f"{settings.probe_queue_prefix}.default"}
            assert "%h" in argv[argv.index("-n") + 1]  # one node name per pod
        else:
            assert argv[3] == "beat" and argv[argv.index("--schedule") + 1].startswith("/tmp/")
    else:
        assert argv[0] == "canary"
        args = build_parser().parse_args(argv[1:])
        assert callable(args.func)


def test_every_canary_pod_reaches_redis_with_the_password() -> None:
    for _workload, container in _containers():
        if container["image"] != "canary":
            continue
        env = _env(container)
        names = list(env)
        url = env["CANARY_REDIS_URL"]["value"]
        assert url == "redis://:$(REDIS_PASSWORD)@canary-redis:6379/0", container["name"]
        # $(VAR) is expanded only from variables defined before it.
        assert names.index("REDIS_PASSWORD") < names.index("CANARY_REDIS_URL")
        assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "canary-secrets"


def test_secrets_come_from_one_secret_and_never_appear_inline() -> None:
    refs = set()
    for _workload, container in _containers():
        for e in container.get("env") or []:
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                refs.add((ref["name"], ref["key"]))
            elif re.search(r"(?i)password|token", e["name"]):
                raise AssertionError(f"{container['name']}: {e['name']} is set inline")
    assert refs == {("canary-secrets", "redis-password"), ("canary-secrets", "gate-token")}
    assert not _of("Secret")  # created by the operator (docs/kubernetes.md), never committed


def test_redis_requires_a_password_and_persists() -> None:
    redis = _named("StatefulSet", "canary-redis")
    command = " ".join(redis["spec"]["template"]["spec"]["containers"][0]["command"])
    assert '--requirepass "$REDIS_PASSWORD"' in command and "--appendonly yes" in command
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"


def test_services_select_pods_and_name_their_ports() -> None:
    for service in _of("Service", "fleet"):
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP"  # nothing public
        selector = service["spec"]["selector"]
        pods = [
            (w, c)
            for w, c in _containers()
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert pods, f"service {service['metadata']['name']} selects no pod"
        ports = {p["name"] for _w, c in pods for p in c.get("ports") or []}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, (service["metadata"]["name"], port)


def test_workloads_select_their_own_template() -> None:
    for kind in WORKLOADS:
        for w in _of(kind):
            labels = w["spec"]["template"]["metadata"]["labels"]
            assert w["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_canary_containers_run_unprivileged() -> None:
    for workload, container in _containers():
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
        assert not any("hostPort" in p for p in container.get("ports") or [])


def test_probe_workers_scale() -> None:
    probe = _named("Deployment", "canary-probe")
    assert probe["spec"]["replicas"] >= 1
    assert not probe["spec"]["template"]["spec"]["containers"][0].get("ports")
    assert not [
        s
        for s in _of("Service")
        if s["spec"]["selector"].get("app.kubernetes.io/component") == "probe"
    ]


def test_the_exporter_is_scraped() -> None:
    monitor = _of("ServiceMonitor")[0]
    service = _named("Service", "canary-exporter")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}


# --- the gate: its config, the Argo template and the Flagger webhooks ---------------------------


def _gate_config(tmp_path: Path) -> GateConfig:
    configmap = _named("ConfigMap", "canary-gate-config")
    for name, text in configmap["data"].items():
        (tmp_path / name).write_text(text)
    return GateConfig.load(tmp_path)


def test_the_gate_needs_its_token_and_its_config(tmp_path: Path) -> None:
    gate = _named("Deployment", "canary-gate")
    pod = gate["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "gate")
    env = _env(container)
    assert env["CANARY_GATE_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "gate-token"
    argv = container["command"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert argv[argv.index("--config-dir") + 1] == mount["mountPath"]
    # Every path needs the token: probes check the port, not an HTTP answer.
    assert "tcpSocket" in container["readinessProbe"] and "tcpSocket" in container["livenessProbe"]
    config = _gate_config(tmp_path)
    assert config.known() and all(load_transaction(tmp_path / n) for n in config.known())


def test_the_flagger_sidecar_adds_the_token_for_flagger_paths_only() -> None:
    template = _named("ConfigMap", "canary-gate-flagger-proxy")["data"]["flagger.conf.template"]
    locations = re.findall(r"location (\S+) \{(.*?)\n\s*\}", template, re.S)
    assert [loc for loc, _ in locations] == ["/v1/flagger/", "/"]
    assert 'Authorization "Bearer ${CANARY_GATE_TOKEN}"' in locations[0][1]
    assert "return 404" in locations[1][1]
    policy = _of("NetworkPolicy")[0]
    flagger_rule = next(r for r in policy["spec"]["ingress"] if r.get("from"))
    assert [p["port"] for p in flagger_rule["ports"]] == [8788]


def _template_args() -> tuple[dict[str, Any], set[str]]:
    template = _of("AnalysisTemplate")[0]
    declared = {a["name"]: a for a in template["spec"]["args"]}
    used = set(
        re.findall(r"\{\{\s*args\.([\w-]+)\s*\}\}", yaml.safe_dump(template["spec"]["metrics"]))
    )
    return declared, used


def test_the_analysis_template_posts_a_body_the_gate_accepts(tmp_path: Path) -> None:
    template = _of("AnalysisTemplate")[0]
    declared, used = _template_args()
    assert used <= set(declared), used - set(declared)
    web = template["spec"]["metrics"][0]["provider"]["web"]
    assert web["method"] == "POST" and web["url"].endswith("/v1/verdicts")
    assert web["jsonPath"] == "{$.verdict}"
    headers = {h["key"]: h["value"] for h in web["headers"]}
    assert headers["Authorization"] == "Bearer {{ args.gate-token }}"
    assert "secretKeyRef" in declared["gate-token"]["valueFrom"]
    rendered = {
        k: re.sub(
            r"\{\{\s*args\.([\w-]+)\s*\}\}",
            lambda m: declared[m.group(1)].get("value") or "http://x",
            v,
        )
        for k, v in web["jsonBody"].items()
    }
    body = VerdictBody.model_validate(rendered)
    assert set(body.transactions) <= set(_gate_config(tmp_path).known())


def test_the_rollout_gives_every_arg_without_a_default() -> None:
    declared, _used = _template_args()
    needed = {n for n, a in declared.items() if "value" not in a and "valueFrom" not in a}
    steps = _of("Rollout")[0]["spec"]["strategy"]["canary"]["steps"]
    analysis = next(s["analysis"] for s in steps if "analysis" in s)
    assert (
        analysis["templates"][0]["templateName"] == _of("AnalysisTemplate")[0]["metadata"]["name"]
    )
    given = {a["name"] for a in analysis["args"]}
    assert needed <= given, needed - given
    # Services the Rollout hands to Argo are the URLs the gate probes.
    canary = _of("Rollout")[0]["spec"]["strategy"]["canary"]
    urls = {a["name"]: a.get("value", "") for a in analysis["args"]}
    assert f"//{canary['stableService']}." in urls["stable-url"]
    assert f"//{canary['canaryService']}." in urls["canary-url"]


def test_flagger_webhooks_call_the_gate_with_metadata_it_accepts(tmp_path: Path) -> None:
    canary = _of("Canary")[0]
    hooks = canary["spec"]["analysis"]["webhooks"]
    assert {h["type"] for h in hooks} == set(HOOKS)
    known = set(_gate_config(tmp_path).known())
    name = canary["metadata"]["name"]
    for hook in hooks:
        assert hook["url"].endswith(f":8788/v1/flagger/{hook['type']}")
        payload = FlaggerPayload.model_validate(
            {
                "name": name,
                "namespace": canary["metadata"]["namespace"],
                "phase": "Progressing",
                "checksum": "abc",
                "metadata": hook["metadata"],
            }
        )
        request = payload.request()
        assert set(request.transactions) <= known
        # Flagger's own Services for the two versions.
        assert (
            f"//{name}-primary." in request.stable_url and f"//{name}-canary." in request.canary_url
        )
        seconds = float(hook["timeout"].removesuffix("s"))
        if hook["type"] == "pre-rollout":
            assert seconds > DEFAULT_HOOK_WAIT_S  # the gate answers before Flagger gives up
