"""The nginx router's upstream file: rendering, reading back, atomic replacement."""

from __future__ import annotations

from pathlib import Path

import pytest

from canary.errors import RouterError
from canary.routers.nginx import parse_upstream, render_upstream, write_atomically


@pytest.mark.parametrize("weight", [0, 1, 5, 50, 99, 100])
def test_render_then_parse_round_trips(weight: int) -> None:
    text = render_upstream("shop", "10.0.0.1:80", "10.0.0.2:80", weight, "max_fails=3", "c")
    assert "weight=0" not in text  # nginx refuses it
    assert parse_upstream(text, "shop") == {"10.0.0.1:80": 100 - weight, "10.0.0.2:80": weight}


def test_zero_is_down_and_extra_params_are_kept() -> None:
    text = render_upstream("shop", "a:1", "b:2", 0, "max_fails=3 fail_timeout=5s")
    assert "server a:1 weight=100 max_fails=3 fail_timeout=5s;" in text
    assert "server b:2 down max_fails=3 fail_timeout=5s;" in text


def test_parse_defaults_and_other_blocks() -> None:
    text = "upstream other { server x:1 weight=7; }\nupstream shop {\n  server a:1;\n}\n"
    assert parse_upstream(text, "shop") == {"a:1": 1}
    with pytest.raises(RouterError, match="no 'upstream missing"):
        parse_upstream(text, "missing")
    with pytest.raises(RouterError, match="bad weight"):
        parse_upstream("upstream shop { server a:1 weight=x; }", "shop")


def test_write_atomically_replaces_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "conf.d" / "upstream.conf"
    write_atomically(target, "one")
    write_atomically(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["upstream.conf"]
