"""Reading YAML and JSON with positions, and validating against models."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from canary.documents import format_path, load_document, load_model, parse_json, parse_yaml
from canary.errors import ConfigError


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: str
    weight: int = 0


class Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    steps: list[Inner]


def _problems(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [str(p) for p in exc.value.problems]


def test_yaml_positions_point_at_values_and_keys() -> None:
    doc = parse_yaml("f.yaml", "name: x\nsteps:\n  - method: GET\n    weight: 3\n")
    assert doc.where(("steps", 0, "weight")) == (4, 13)
    assert doc.where(("steps", 0, "weight"), key=True) == (4, 5)
    assert doc.where(("steps", 0, "nope")) == (3, 5)  # nearest known ancestor


def test_json_positions_match_yaml_style() -> None:
    text = '{\n  "name": "x",\n  "steps": [\n    {"method": "GET", "weight": 3}\n  ]\n}\n'
    doc = parse_json("f.json", text)
    assert doc.data["steps"][0]["weight"] == 3
    assert doc.where(("steps", 0, "weight")) == (4, 33)
    assert doc.where(("steps", 0, "weight"), key=True) == (4, 23)


def test_every_problem_is_reported_with_location_and_did_you_mean(tmp_path: Path) -> None:
    f = tmp_path / "t.yaml"
    f.write_text("name: x\nsteps:\n  - method: GET\n    wieght: 3\n  - weight: nope\n")
    with pytest.raises(ConfigError) as exc:
        load_model(Outer, f)
    got = _problems(exc)
    assert f"{f}:4:5: steps[0].wieght: unknown field 'wieght'; did you mean 'weight'?" in got
    assert f"{f}:5:5: steps[1].method: is required" in got
    assert any(p.startswith(f"{f}:5:13: steps[1].weight: ") for p in got)


def test_json_errors_carry_line_and_column(tmp_path: Path) -> None:
    f = tmp_path / "t.json"
    f.write_text('{"name": "x",\n "steps": [{"method": "GET",}]}')
    with pytest.raises(ConfigError) as exc:
        load_document(f)
    assert _problems(exc)[0].startswith(f"{f}:2:29: invalid JSON")


def test_duplicate_keys_are_errors() -> None:
    with pytest.raises(ConfigError, match="duplicate key"):
        parse_yaml("f.yaml", "a: 1\na: 2\n")
    with pytest.raises(ConfigError, match="duplicate key 'a'"):
        parse_json("f.json", '{"a": 1, "a": 2}')


def test_yaml_tags_cannot_construct_objects() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_yaml("evil.yaml", "x: !!python/object/apply:os.system ['true']\n")
    assert "evil.yaml:1:4" in str(exc.value)


def test_alias_bombs_are_refused() -> None:
    lines = ["a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for i in range(1, 8):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [{', '.join(['*' + prev] * 10)}]")
    with pytest.raises(ConfigError, match="more than"):
        parse_yaml("bomb.yaml", "\n".join(lines))


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_document(tmp_path / "missing.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_document(tmp_path / "empty.yaml")


def test_format_path() -> None:
    assert format_path(("steps", 2, "url")) == "steps[2].url"
    assert format_path(()) == ""


class Pause(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pause: int


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")
    steps: list[int | Pause]


def test_union_branches_the_user_did_not_mean_stay_quiet(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("steps: [5, {pauze: 3}]\n")
    with pytest.raises(ConfigError) as exc:
        load_model(Plan, f)
    assert _problems(exc) == [
        f"{f}:1:12: steps[1].pause: is required",
        f"{f}:1:13: steps[1].pauze: unknown field 'pauze'; did you mean 'pause'?",
    ]


def _deep_block_yaml(depth: int) -> str:
    lines = ["name: deep"]
    for i in range(depth):
        lines.append("  " * i + f"k{i}:")
    lines.append("  " * depth + "leaf: 1")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        # The root mapping is level 1, so the 100th '[' is the first value past the limit.
        ("flow.yaml", "x: " + "[" * 1000 + "]" * 1000 + "\n", "flow.yaml:1:103:"),
        ("block.yaml", _deep_block_yaml(1000), "block.yaml:102:201:"),
        ("deep.json", '{"x": ' + "[" * 1000 + "]" * 1000 + "}", "deep.json:1:106:"),
        # Deep enough to refuse, not so deep that json.loads itself gives up.
        ("150.json", '{"x": ' + "[" * 150 + "]" * 150 + "}", "150.json:1:106:"),
    ],
)
def test_deep_nesting_is_a_config_error_with_its_position(name: str, text: str, where: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_document(name, text)
    (problem,) = _problems(exc)
    assert problem.startswith(where), problem
    assert "nested deeper than 100 levels" in problem


def test_aliases_cannot_stack_depth_past_the_limit() -> None:
    # Each anchor nests the previous one 60 levels deeper: no single node is deep, the tree is.
    lines = ["a0: &a0 1"]
    for i in range(1, 20):
        lines.append(f"a{i}: &a{i} " + "[" * 60 + f"*a{i - 1}" + "]" * 60)
    with pytest.raises(ConfigError, match="nested deeper than 100 levels"):
        parse_yaml("stack.yaml", "\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="nested deeper than 100 levels"):
        parse_yaml("self.yaml", "a: &a [*a]\n")


def test_nesting_up_to_the_limit_loads() -> None:
    doc = parse_yaml("ok.yaml", "x: " + "[" * 99 + "]" * 99 + "\n")
    assert isinstance(doc.data["x"], list)
    assert isinstance(parse_json("ok.json", "[" * 100 + "]" * 100).data, list)


def test_a_deep_rollout_or_transaction_file_is_a_config_error(tmp_path: Path) -> None:
    from canary.rollout.config import load_rollout
    from canary.transactions import load_transaction

    for name, load in (("rollout.yaml", load_rollout), ("tx.yaml", load_transaction)):
        path = tmp_path / name
        path.write_text("name: deep\nsteps: " + "[" * 1000 + "]" * 1000 + "\n")
        with pytest.raises(ConfigError) as exc:
            load(path)
        assert _problems(exc) == [
            f"{path}:2:107: nested deeper than 100 levels of lists and mappings"
        ]
