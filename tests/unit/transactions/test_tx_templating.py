"""The template mini-language: parsing, typed rendering, env and secrets, built-ins."""

from __future__ import annotations

import re
import uuid

import pytest

from canary.transactions import templating as t


def ctx(**variables: object) -> t.Context:
    return t.Context(
        variables=dict(variables),
        env={"HOME": "/root", "TOKEN": "s3cr3t"},
        now=lambda: 1700000000.5,
    )


def test_plain_text_is_untouched() -> None:
    assert t.render("no templates here {", ctx()) == "no templates here {"


def test_a_lone_reference_keeps_its_type() -> None:
    c = ctx(n=42, flag=True, items=[1, 2])
    assert t.render("{{ n }}", c) == 42
    assert t.render("{{flag}}", c) is True
    assert t.render(" {{ n }}", c) == " 42"
    assert t.render("{{ items }}/{{ flag }}", c) == "[1, 2]/true"


def test_env_and_secret_come_from_the_environment_and_secrets_are_remembered() -> None:
    c = ctx()
    assert t.render("{{ env.HOME }}", c) == "/root"
    assert c.secrets == set()
    assert t.render("Bearer {{ secret.TOKEN }}", c) == "Bearer s3cr3t"
    assert c.secrets == {"s3cr3t"}
    with pytest.raises(t.RenderError, match="environment variable MISSING is not set"):
        t.render("{{ env.MISSING }}", c)


def test_builtins() -> None:
    c = ctx()
    assert t.render("{{ now }}", c) == 1700000000 == t.render("{{ timestamp }}", c)
    assert t.render("{{ now_ms }}", c) == 1700000000500
    assert t.render("{{ now_iso }}", c) == "2023-11-14T22:13:20Z"
    uuid.UUID(t.render("{{ uuid }}", c))
    assert t.render("{{ uuid }}", c) != t.render("{{ uuid }}", c)
    for _ in range(50):
        assert 1 <= t.render("{{ random_int(1, 3) }}", c) <= 3
    assert isinstance(t.render("{{ random_int }}", c), int)


def test_unset_variable_is_a_render_error() -> None:
    with pytest.raises(t.RenderError, match="variable 'x' is not set"):
        t.render("{{ x }}", ctx())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{ a.b }}", "cannot understand"),
        ("{{ __import__('os') }}", "cannot understand"),
        ("{{ a + 1 }}", "cannot understand"),
        ("{{ }}", "cannot understand"),
        ("x {{ a", "never closed"),
        ("{{ uuid(1, 2) }}", "only random_int takes arguments"),
        ("{{ random_int(5, 1) }}", "must not exceed"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(t.TemplateError, match=re.escape(message)):
        t.parse(text)


def test_refs_and_offsets() -> None:
    refs = t.refs("/a/{{ id }}/{{ env.X }}/{{ secret.Y }}/{{ now }}")
    assert [(r.kind, r.name) for r in refs] == [
        ("var", "id"),
        ("env", "X"),
        ("secret", "Y"),
        ("builtin", "now"),
    ]
    assert refs[0].offset == 3


def test_render_value_walks_structures() -> None:
    c = ctx(id=7)
    assert t.render_value({"{{ id }}": ["{{ id }}", "n{{ id }}", 3, None]}, c) == {
        "7": [7, "n7", 3, None]
    }


def test_walk_strings_reports_paths() -> None:
    found = dict(t.walk_strings({"a": ["x", {"b": "y"}], "{{k}}": 1}, ("payload",)))
    assert found[("payload", "a", 0)] == "x"
    assert found[("payload", "a", 1, "b")] == "y"
    assert found[("payload", "{{k}}")] == "{{k}}"


def test_quoted_literal_writes_braces() -> None:
    c = ctx(n=1)
    assert t.render('{{ "{{" }} name }}', c) == "{{ name }}"
    assert t.render("a{{ '{{' }}{{ n }}", c) == "a{{1"
    assert t.refs('{{ "{{" }}') == []
