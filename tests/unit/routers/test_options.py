"""Router options are checked when the rollout is loaded: unknown keys, required options, types."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from canary.errors import ConfigError
from canary.notifiers import NOTIFIERS
from canary.plugins import option_problems
from canary.rollout.config import load_rollout, validate_config
from canary.routers import ROUTERS, build_router

ROOT = Path(__file__).resolve().parents[3]
BROWSE = ROOT / "configs" / "transactions" / "demo-browse.yaml"


def rollout_file(tmp_path: Path, plugins: str) -> Path:
    """A valid rollout whose router and notifiers are ``plugins`` (YAML from line 9 on)."""
    path = tmp_path / "rollout.yaml"
    path.write_text(
        "name: shop\n"
        "stable:\n"
        "  url: http://127.0.0.1:8001\n"
        "canary:\n"
        "  url: http://127.0.0.1:8002\n"
        "transactions:\n"
        f"  - {BROWSE}\n"
        "schedule: {steps: [50, 100], step_interval: 2s}\n" + plugins
    )
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_rollout(path)
    return [str(p) for p in exc.value.problems]


def test_a_misspelt_haproxy_option_is_an_error_with_a_hint(tmp_path: Path) -> None:
    path = rollout_file(tmp_path, "router:\n  type: haproxy\n  sockett: /run/haproxy.sock\n")
    assert problems(path) == [
        f"{path}:11:12: router.sockett: unknown field 'sockett'; did you mean 'socket'?"
    ]


def test_a_notifier_url_that_is_a_number_is_an_error(tmp_path: Path) -> None:
    path = rollout_file(tmp_path, "notifiers:\n  - type: webhook\n    url: 12\n")
    assert problems(path) == [f"{path}:11:10: notifiers[0].url: input should be a valid string"]


def test_every_plugin_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = rollout_file(
        tmp_path,
        "router:\n"
        "  type: nginx\n"
        "  timeout: -1\n"
        "notifiers:\n"
        "  - type: log\n"
        "  - type: slack\n"
        "    webhook_url: ftp://hooks.example/T0/B0/secret-token\n"
        "  - type: pager\n",
    )
    got = problems(path)
    assert got == [
        f"{path}:10:3: router.upstream_file: is required",
        f"{path}:11:12: router.timeout: input should be greater than 0",
        f"{path}:15:18: notifiers[1].webhook_url: must be an http(s) URL with a host",
        f"{path}:16:11: notifiers[2].type: unknown notifier 'pager'; known notifiers: "
        + ", ".join(sorted(NOTIFIERS)),
    ]
    # The URL may be a credential (Slack's is): it is never echoed.
    assert "secret-token" not in "\n".join(got)


# The two examples of issue 12.4, as the Celery API receives them, and what it must answer.
BAD_CONFIG: dict[str, Any] = {
    "name": "shop",
    "stable": {"url": "http://127.0.0.1:8001"},
    "canary": {"url": "http://127.0.0.1:8002"},
    "transactions": ["browse.yaml"],
    "router": {"type": "haproxy", "sockett": "/run/haproxy.sock"},
    "notifiers": [{"type": "webhook", "url": 12}],
}
BAD_CONFIG_PROBLEMS = [
    "router.sockett: unknown field 'sockett'; did you mean 'socket'?",
    "notifiers[0].url: input should be a valid string",
]


def test_the_json_api_gets_the_same_problems() -> None:
    with pytest.raises(ConfigError) as exc:
        validate_config(BAD_CONFIG)
    assert [f"{p.path}: {p.message}" for p in exc.value.problems] == BAD_CONFIG_PROBLEMS


def test_building_a_router_checks_the_same_model() -> None:
    with pytest.raises(ConfigError) as exc:
        build_router("haproxy", {"sockett": "/run/haproxy.sock", "timeout": "soon"})
    assert sorted(str(exc.value).splitlines()) == [
        "router haproxy: sockett: unknown field 'sockett'; did you mean 'socket'?",
        "router haproxy: timeout: input should be a valid number, unable to parse string as a "
        "number",
    ]


def test_an_unknown_option_without_a_near_name_lists_the_known_ones() -> None:
    (problem,) = option_problems(ROUTERS["webhook"].Options, {"url": "http://x", "colour": 1})
    assert problem.at_key and problem.path == ("colour",)
    assert problem.message.startswith("unknown field 'colour'; known fields: backoff, headers,")


@pytest.mark.parametrize("registry", [ROUTERS, NOTIFIERS], ids=["routers", "notifiers"])
def test_every_plugin_registers_a_strict_options_model(registry: dict[str, type]) -> None:
    for name, cls in registry.items():
        model = cls.Options
        assert issubclass(model, BaseModel), name
        assert model.model_config.get("extra") == "forbid", name


def test_the_kubernetes_example_loads() -> None:
    config, _ = load_rollout(ROOT / "configs" / "rollouts" / "kubernetes.yaml")
    options = config.router.options()
    assert config.router.type == "kubernetes"
    assert (options["route"], options["stable_service"], options["canary_service"]) == (
        "shop",
        "shop-stable",
        "shop-canary",
    )
    build_router("kubernetes", options)  # builds without a cluster: the client is made on use
