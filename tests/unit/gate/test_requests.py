"""Request bodies (Argo's and Flagger's) into analysis requests, ids, and the rollout they start."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from canary.errors import ConfigError
from canary.gate.analyses import AnalysisRequest, build_rollout, rollout_id
from canary.gate.argo import VerdictBody
from canary.gate.config import GateConfig
from canary.gate.flagger import FlaggerPayload

ROOT = Path(__file__).resolve().parents[3]
BROWSE = ROOT / "configs" / "transactions" / "demo-browse.yaml"


@pytest.fixture()
def gate(tmp_path: Path) -> GateConfig:
    (tmp_path / "browse.yaml").write_text(BROWSE.read_text())
    (tmp_path / "gate.yaml").write_text(
        yaml.safe_dump({"schedule": {"step_interval": "5s"}, "slo": {"latency_p95_ms": 500}})
    )
    return GateConfig.load(tmp_path)


def _body(**over: object) -> VerdictBody:
    doc = {
        "name": "shop-7f9c",
        "service": "shop",
        "stable_url": "http://shop-stable:8080",
        "canary_url": "http://shop-canary:8080",
        "transactions": ["browse.yaml"],
        **over,
    }
    return VerdictBody.model_validate(doc)


def test_argo_body_accepts_a_list_or_a_comma_separated_arg() -> None:
    assert _body(transactions="a.yaml, b.yaml").transactions == ["a.yaml", "b.yaml"]
    assert _body().request().transactions == ("browse.yaml",)


def test_argo_body_refuses_unknown_fields_such_as_a_router() -> None:
    with pytest.raises(ValidationError, match="router"):
        _body(router={"type": "command", "set_weight": "kubectl ..."})


def test_the_id_depends_on_the_key_only_and_is_readable() -> None:
    a = _body().request()
    assert rollout_id(a) == rollout_id(_body(canary_url="http://other:1").request())
    assert rollout_id(a) != rollout_id(_body(name="shop-8e0d").request())
    assert rollout_id(a).startswith("gate-shop-7f9c-")
    weird = AnalysisRequest("k", "a b/../c", None, "http://s", "http://c", ("x",))
    assert "/" not in rollout_id(weird) and " " not in rollout_id(weird)


def test_flagger_key_is_namespace_name_and_checksum() -> None:
    def payload(**over: object) -> FlaggerPayload:
        doc = {
            "name": "podinfo",
            "namespace": "test",
            "phase": "Progressing",
            "checksum": "85d557f47b",
            "metadata": {
                "stable_url": "http://podinfo-primary.test:9898",
                "canary_url": "http://podinfo-canary.test:9898",
                "transactions": "browse.yaml,checkout.yaml",
            },
            **over,
        }
        return FlaggerPayload.model_validate(doc)

    req = payload().request()
    assert req.transactions == ("browse.yaml", "checkout.yaml") and req.service == "podinfo"
    assert rollout_id(req) != rollout_id(payload(checksum="0000").request())
    assert rollout_id(req) != rollout_id(payload(namespace="prod").request())
    # The phase changes at every call; the analysis does not.
    assert rollout_id(req) == rollout_id(payload(phase="Promoting").request())
    with pytest.raises(ConfigError, match=r"metadata\.canary_url: is required"):
        payload(metadata={"stable_url": "http://a", "transactions": "b.yaml"}).request()


def test_the_rollout_never_moves_traffic_and_takes_the_gate_defaults(gate: GateConfig) -> None:
    config, txs = build_rollout(_body(slo={"max_latency_increase_pct": 25}).request(), gate)
    assert config.router.type == "noop"
    assert config.schedule.step_interval == 5.0
    assert config.slo.latency_p95_ms == 500  # from gate.yaml
    assert config.slo.max_latency_increase_pct == 25  # the caller's, field by field
    assert config.service_name == "shop" and config.stable.url == "http://shop-stable:8080"
    assert [t["transaction_name"] for t in txs] == ["demo-browse"]


def test_unknown_or_outside_transactions_list_the_known_ones(gate: GateConfig) -> None:
    for name in ("nope.yaml", "../browse.yaml", "gate.yaml"):
        with pytest.raises(ConfigError, match=r"unknown transaction .*known: browse\.yaml"):
            build_rollout(_body(transactions=[name]).request(), gate)


def test_bad_urls_are_config_errors(gate: GateConfig) -> None:
    with pytest.raises(ConfigError, match="http"):
        build_rollout(_body(canary_url="file:///etc/passwd").request(), gate)


def test_a_bad_gate_file_names_file_line_col_and_field(tmp_path: Path) -> None:
    (tmp_path / "gate.yaml").write_text("probes:\n  per_step: 0\nnotifiers: [{type: pager}]\n")
    with pytest.raises(ConfigError) as err:
        GateConfig.load(tmp_path)
    text = str(err.value)
    assert f"{tmp_path / 'gate.yaml'}:2:13: probes.per_step:" in text
    with pytest.raises(ConfigError, match="does not exist"):
        GateConfig.load(tmp_path / "missing")


def test_a_gate_file_with_an_unknown_notifier_lists_the_known_ones(tmp_path: Path) -> None:
    (tmp_path / "gate.yaml").write_text("notifiers: [{type: pager}]\n")
    with pytest.raises(
        ConfigError,
        match=r"gate\.yaml:1:20: notifiers\[0\]\.type: unknown notifier 'pager'; known notifiers: .*slack",
    ):
        GateConfig.load(tmp_path)
