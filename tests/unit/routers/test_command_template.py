"""The command router's templating: names checked up front, values shell-quoted, no evaluation."""

from __future__ import annotations

import shlex

import pytest

from canary.errors import ConfigError, RouterError
from canary.routers.command import CommandResult, placeholders, render

VALUES = {
    "weight": 5,
    "service": "shop",
    "canary": {"image": "shop:1.1", "version": "1.1", "evil": "$(touch /tmp/x) `id` 'q'"},
    "stable": {"image": None},
}


def test_placeholders_are_listed_and_spacing_is_free() -> None:
    assert placeholders("a {{weight}} b {{  canary.image }} {{service }}") == [
        "weight",
        "canary.image",
        "service",
    ]


def test_values_are_quoted_for_the_shell() -> None:
    rendered = render("deploy {{ canary.evil }} {{ weight }}", VALUES)
    assert shlex.split(rendered) == ["deploy", VALUES["canary"]["evil"], "5"]  # type: ignore[index]


def test_text_that_only_looks_like_a_template_is_left_alone() -> None:
    assert render("echo '{ weight }' {{ weight }} }}", VALUES) == "echo '{ weight }' 5 }}"


def test_a_variable_without_value_is_a_router_error() -> None:
    with pytest.raises(RouterError, match=r"stable.image \}\} has no value"):
        render("{{ stable.image }}", VALUES)


@pytest.mark.parametrize(
    "template",
    ["{{ 1+1 }}", "{{ canary.image.tag }}", "{{ os.system }}", "{{ weight() }}", "{{ }}"],
)
def test_anything_but_a_plain_name_is_refused(template: str) -> None:
    with pytest.raises(ConfigError):
        placeholders(template)


def test_result_summary_names_status_and_streams() -> None:
    done = CommandResult("set_weight", "x", 0, "out", "err", 0.25)
    assert done.summary() == "$ x  (exit 0, 0.25 s)\nout\n[stderr] err"
    killed = CommandResult("set_weight", "x", None, "", "", 1.0)
    assert "timed out" in killed.summary()
