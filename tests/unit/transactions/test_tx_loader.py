"""Loading definitions: the seed fields, extensions, and exact FILE:LINE:COL problems."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from canary.errors import ConfigError
from canary.transactions import Transaction, load_transaction

SEED_YAML = """\
transaction_name: add-to-cart
entrypoint_url: https://shop.example.com/
steps:
  - method: POST
    url: /api/cart
    payload:
      sku: A1
      qty: 1
    expected_response_code: 201
    response_validation:
      - jsonpath: "$.items[0].sku"
        equals: "A1"
      - regex: "\\"total\\":\\\\s*[0-9]+"
  - method: POST
    url: /api/feedback
    payload_type: form
    payload: {rating: "5"}
    expected_response_code: [200, 202]
sla_success_threshold: 99.0
error_budget: 5
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_transaction(path)
    return [str(p) for p in info.value.problems]


def test_seed_yaml_loads_with_every_field(tmp_path: Path) -> None:
    tx = load_transaction(write(tmp_path, "seed.yaml", SEED_YAML))
    assert tx.name == "add-to-cart"
    assert tx.entrypoint_url == "https://shop.example.com/"
    assert tx.sla_success_threshold == 99.0 and tx.error_budget == 5
    first, second = tx.steps
    assert (first.method, first.url, first.payload) == (
        "POST",
        "/api/cart",
        {"sku": "A1", "qty": 1},
    )
    assert first.expected_response_code == 201 and first.body_kind() == "json"
    assert first.response_validation[0].jsonpath == "$.items[0].sku"
    assert first.response_validation[0].equals == "A1"
    assert first.response_validation[1].regex == '"total":\\s*[0-9]+'
    assert second.body_kind() == "form" and second.expected_response_code == [200, 202]


def test_seed_json_loads_the_same(tmp_path: Path) -> None:
    yaml_tx = load_transaction(write(tmp_path, "seed.yaml", SEED_YAML))
    data = yaml_tx.model_dump(mode="json")
    json_tx = load_transaction(write(tmp_path, "seed.json", json.dumps(data, indent=2)))
    assert json_tx == yaml_tx


def test_defaults_are_documented_values(tmp_path: Path) -> None:
    tx = load_transaction(
        write(
            tmp_path,
            "min.yaml",
            "transaction_name: m\nentrypoint_url: /\nsteps: [{method: GET, url: /}]\n",
        )
    )
    assert tx.sla_success_threshold == 99.0 and tx.error_budget == 5 and tx.timeout == 10.0
    assert tx.steps[0].accepted(204) and not tx.steps[0].accepted(302)
    assert tx.steps[0].body_kind() is None


def test_round_trip_through_json_keeps_meaning(tmp_path: Path) -> None:
    tx = load_transaction(
        write(
            tmp_path,
            "rt.yaml",
            """\
            transaction_name: rt
            entrypoint_url: https://x.example/
            variables: {user: alice}
            steps:
              - name: login
                method: post
                url: /login
                auth: {basic: {username: "{{ user }}", password: "{{ secret.PW }}"}}
                response_validation:
                  - jsonpath: $.x
                    equals: null
                  - jsonpath: $.y
                capture: {token: $.token}
            finally:
              - method: DELETE
                url: /s/{{ token }}
            """,
        )
    )
    dumped = tx.model_dump(mode="json")
    assert "finally" in dumped and "{{ secret.PW }}" in json.dumps(dumped)
    again = Transaction.model_validate(json.loads(json.dumps(dumped)))
    assert again == tx
    assert again.steps[0].response_validation[0].given("equals")
    assert not again.steps[0].response_validation[1].given("equals")
    assert again.steps[0].method == "POST"


def test_every_problem_at_once_with_positions(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.yaml",
        """\
        transaction_name: "bad name!"
        entrypoint_url: https://shop.example.com/
        sla_succes_threshold: 50
        steps:
          - method: FETCH
            url: /api/{{ tokn }}
            paylod: {a: 1}
            expected_response_code: 700
        error_budget: -1
        """,
    )
    got = problems(path)
    f = str(path)
    assert got == [
        f"{f}:1:19: transaction_name: must be 1 to 128 letters, digits, '-', '_' and '.', got 'bad name!'",
        f"{f}:3:1: sla_succes_threshold: unknown field 'sla_succes_threshold'; "
        "did you mean 'sla_success_threshold'?",
        f"{f}:5:13: steps[0].method: input should be 'GET', 'POST', 'PUT', 'PATCH', 'DELETE', "
        "'HEAD' or 'OPTIONS'",
        f"{f}:6:10: steps[0].url: variable 'tokn' is used before any step captures it",
        f"{f}:7:5: steps[0].paylod: unknown field 'paylod'; did you mean 'payload'?",
        f"{f}:8:29: steps[0].expected_response_code: must be an HTTP status code (100-599), got 700",
        f"{f}:9:15: error_budget: input should be greater than or equal to 0",
    ]


def test_json_problems_have_positions(tmp_path: Path) -> None:
    text = '{\n  "transaction_name": "j",\n  "entrypoint_url": "/",\n  "steps": [\n    {"method": "GET", "ulr": "/"}\n  ]\n}\n'
    path = write(tmp_path, "bad.json", text)
    got = problems(path)
    assert f"{path}:5:23: steps[0].ulr: unknown field 'ulr'; did you mean 'url'?" in got
    assert f"{path}:5:5: steps[0].url: is required" in got


def test_invalid_json_syntax(tmp_path: Path) -> None:
    path = write(tmp_path, "syntax.json", '{"transaction_name": "x",\n "steps": [}\n')
    [msg] = problems(path)
    assert msg.startswith(f"{path}:2:12: invalid JSON")


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("transaction_name: a\ntransaction_name: b\n", ":2:1: transaction_name: duplicate key"),
        ("x: !!python/object:os.system ls\n", "YAML tags that construct objects are not allowed"),
        ("x: !!python/name:os.system\n", "YAML tags that construct objects are not allowed"),
        ("- just\n- a list\n", ":1:1: a transaction is a mapping"),
        ("a: [\n", "invalid YAML"),
        ("on: 1\n", "YAML reads this key as True"),
    ],
)
def test_yaml_safety_and_shape(tmp_path: Path, text: str, expect: str) -> None:
    got = problems(write(tmp_path, "y.yaml", text))
    assert any(expect in p for p in got), got


def test_expressions_checked_at_load(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "expr.yaml",
        """\
        transaction_name: e
        entrypoint_url: /
        steps:
          - method: GET
            url: /
            response_validation:
              - jsonpath: "foo bar"
              - regex: "(a)\\\\1"
              - regex: "(?=x)"
              - jsonpath: $.a
                status: 200
              - header: X
                matches: "(?<!a)b"
              - json_schema: {type: nonsense}
        """,
    )
    got = "\n".join(problems(path))
    assert "response_validation[0].jsonpath: invalid JSONPath (at column 4)" in got
    assert "response_validation[1].regex: regular expression not supported by RE2" in got
    assert "response_validation[2].regex: regular expression not supported by RE2" in got
    assert "response_validation[3]: each check needs exactly one of" in got
    assert "response_validation[4].matches: regular expression not supported" in got
    assert "response_validation[5].json_schema: not a valid JSON Schema" in got


def test_variables_flow_between_steps(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "vars.yaml",
        """\
        transaction_name: v
        entrypoint_url: /{{ later }}
        variables: {base: x, bad: "{{ base }}"}
        headers: {X-Token: "{{ token }}"}
        steps:
          - method: GET
            url: /a/{{ base }}/{{ token }}
            capture: {token: $.t}
          - method: GET
            url: /b/{{ token }}/{{ tokne }}/{{ uuid }}/{{ env.HOME }}/{{ random_int(1, 6) }}
            payload: {k: "{{ oops"}
        finally:
          - method: DELETE
            url: /c/{{ token }}/{{ never }}
        """,
    )
    got = "\n".join(problems(path))
    assert ":2:17: entrypoint_url: variable 'later' is used before any step captures it" in got
    assert "variables.bad: initial variables cannot use other variables" in got
    assert "headers.X-Token: variable 'token' is used before any step captures it" in got
    assert "steps[0].url: variable 'token' is used before" in got
    assert (
        "steps[1].url: variable 'tokne' is used before any step captures it; did you mean 'token'?"
        in got
    )
    assert "steps[1].payload.k: '{{' is never closed by '}}'" in got
    assert "finally[0].url: variable 'never' is used before" in got
    assert "steps[1].url: variable 'token'" not in got


def test_names_and_captures(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "names.yaml",
        """\
        transaction_name: n
        entrypoint_url: /
        steps:
          - {name: a, method: GET, url: /}
          - {name: a, method: GET, url: /, capture: {uuid: $.x, 9x: $.y, ok: {header: X, regex: a}}}
          - {name: "has space", method: GET, url: /}
        """,
    )
    got = "\n".join(problems(path))
    assert "steps[1].name: step name 'a' already used (line 4)" in got
    assert "steps[1].capture.uuid: 'uuid' is reserved for a built-in" in got
    assert "steps[1].capture.9x: variable names are letters" in got
    assert "steps[1].capture.ok: a capture needs exactly one of" in got
    assert "steps[2].name: must be 1 to 128 letters" in got


def test_payload_rules(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "payload.yaml",
        """\
        transaction_name: p
        entrypoint_url: /
        steps:
          - {method: POST, url: /, payload_type: form, payload: {n: 5}}
          - {method: POST, url: /, payload_type: xml, payload: {a: 1}}
          - {method: POST, url: /, payload: {when: 2024-01-01}}
          - {method: POST, url: /, payload_type: raw, payload: "x"}
        """,
    )
    got = "\n".join(problems(path))
    assert ":4:57: steps[0].payload: a form payload is a mapping of strings" in got
    assert "steps[1].payload: a xml payload is a string" in got
    assert "steps[2].payload.when: YAML read this as a date" in got
    assert "steps[3]" not in got


def test_thresholds_validated(tmp_path: Path) -> None:
    base = "transaction_name: t\nentrypoint_url: /\nsteps: [{method: GET, url: /}]\n"
    for extra, msg in [
        ("sla_success_threshold: 0\n", "sla_success_threshold: input should be greater than 0"),
        (
            "sla_success_threshold: 100.5\n",
            "sla_success_threshold: input should be less than or equal to 100",
        ),
        ("error_budget: 1.5\n", "error_budget: input should be a valid integer"),
        ('error_budget: "5"\n', "error_budget: input should be a valid integer"),
    ]:
        got = problems(write(tmp_path, "t.yaml", base + extra))
        assert any(msg in p for p in got), (extra, got)


def test_include_expands_and_points_into_the_included_file(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    write(
        tmp_path,
        "shared/login.yaml",
        """\
        steps:
          - name: login
            method: POST
            url: /login
            capture: {token: $.token}
        """,
    )
    main = write(
        tmp_path,
        "main.yaml",
        """\
        transaction_name: inc
        entrypoint_url: /
        steps:
          - include: shared/login.yaml
          - {method: GET, url: "/me?t={{ token }}"}
        """,
    )
    tx = load_transaction(main)
    assert [s.name for s in tx.steps] == ["login", None]
    write(tmp_path, "shared/login.yaml", "steps:\n  - method: POST\n    urll: /login\n")
    got = problems(main)
    inc = str(tmp_path / "shared" / "login.yaml")
    assert f"{inc}:3:5: steps[0].urll: unknown field 'urll'; did you mean 'url'?" in got
    assert any("steps[1].url: variable 'token' is used before" in p for p in got)


def test_include_cycles_and_missing_files(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "steps:\n  - include: b.yaml\n")
    write(tmp_path, "b.yaml", "steps:\n  - include: a.yaml\n")
    main = write(
        tmp_path,
        "main.yaml",
        "transaction_name: c\nentrypoint_url: /\nsteps:\n  - include: a.yaml\n  - include: nope.yaml\n",
    )
    got = "\n".join(problems(main))
    assert "b.yaml:2:14: steps[0].include: include cycle: a.yaml → b.yaml → a.yaml" in got
    assert "main.yaml:5:14: steps[1].include: cannot include 'nope.yaml': no such file" in got


def test_missing_file_and_empty_file(tmp_path: Path) -> None:
    assert problems(tmp_path / "none.yaml") == [f"{tmp_path / 'none.yaml'}:1:1: no such file"]
    assert "the file is empty" in problems(write(tmp_path, "empty.yaml", ""))[0]


def test_extensions_load(tmp_path: Path) -> None:
    tx = load_transaction(
        write(
            tmp_path,
            "ext.yaml",
            """\
            transaction_name: ext.v1
            entrypoint_url: https://shop.example.com/
            headers: {X-Client: canary}
            timeout: 2.5
            retry: {attempts: 3, when: [5xx, timeout], backoff: 0.1}
            steps:
              - name: create
                method: PUT
                url: /items
                query: {dry: true, tag: [a, b]}
                headers: {Accept: application/json}
                auth: {bearer: "{{ secret.API_TOKEN }}"}
                payload: [1, 2]
                delay: 0.1
                timeout: 1
                follow_redirects: false
                response_validation:
                  - status: {ge: 200, lt: 300}
                  - response_time_ms: 500
                  - body_size: {le: 1000}
                  - header: Content-Type
                    contains: json
                  - jsonpath: $.items
                    count: {ge: 1}
                  - regex: 'id=(?P<id>\\d+)'
                    group: id
                    gt: 0
                capture:
                  id: {regex: 'id=(\\d+)'}
                  session: {cookie: sid, secret: true}
            """,
        )
    )
    step = tx.steps[0]
    assert tx.retry is not None and tx.retry.when == ["5xx", "timeout"]
    assert step.response_validation[5].group == "id"
    assert step.capture["session"].secret


@pytest.mark.parametrize("bad", ["not json", "[1, 2", '{"a": }'])
def test_garbage_json_is_a_problem_not_a_crash(tmp_path: Path, bad: str) -> None:
    assert problems(write(tmp_path, "g.json", bad))


def test_json_duplicate_keys_point_at_the_repeat(tmp_path: Path) -> None:
    text = '{"transaction_name": "a", "entrypoint_url": "/",\n "steps": [{"method": "GET", "method": "POST", "url": "/"}]}'
    path = write(tmp_path, "dup.json", text)
    assert problems(path) == [f"{path}:2:30: steps[0].method: duplicate key 'method'"]


def test_verify_tls_and_literal_braces(tmp_path: Path) -> None:
    tx = load_transaction(
        write(
            tmp_path,
            "tls.yaml",
            """\
            transaction_name: tls
            entrypoint_url: /
            verify_tls: false
            steps:
              - {method: POST, url: /, payload_type: raw, payload: '{{ "{{" }} not a template }}'}
            """,
        )
    )
    assert tx.verify_tls is False


def test_headers_that_cannot_be_sent_are_refused_at_load(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "h.yaml",
        """\
        transaction_name: h
        entrypoint_url: /
        headers: {"X-Ok": "fine", "Bad Name": x}
        steps:
          - method: GET
            url: /
            headers:
              X-Split: "a\\r\\nX-Injected: 1"
              X-Lf: "a\\nb"
              "X:Colon": y
              X-Nul: "a\\0b"
              X-Space: " padded"
            auth: {bearer: "t\\r\\nX-Evil: 1"}
        """,
    )
    got = problems(path)
    assert got == [
        f"{path}:3:27: headers.Bad Name: header name 'Bad Name' has a space: names are only "
        "letters, digits and !#$%&'*+-.^_`|~",
        f"{path}:8:16: steps[0].headers.X-Split: header value has a line break (CR or LF)",
        f"{path}:9:13: steps[0].headers.X-Lf: header value has a line break (CR or LF)",
        f"{path}:10:7: steps[0].headers.X:Colon: header name 'X:Colon' has a ':': names are "
        "only letters, digits and !#$%&'*+-.^_`|~",
        f"{path}:11:14: steps[0].headers.X-Nul: header value has the control character '\\x00'",
        f"{path}:12:16: steps[0].headers.X-Space: header value starts or ends with whitespace",
        f"{path}:13:20: steps[0].auth.bearer: header value has a line break (CR or LF)",
    ]
    as_json = tmp_path / "h.json"
    as_json.write_text(
        json.dumps(
            {
                "transaction_name": "h",
                "entrypoint_url": "/",
                "steps": [{"method": "GET", "url": "/", "headers": {"X-A": "1\r\n2"}}],
            },
            indent=1,
        )
    )
    assert problems(as_json) == [
        f"{as_json}:9:12: steps[0].headers.X-A: header value has a line break (CR or LF)"
    ]


def test_check_header_is_reusable_and_never_quotes_the_value() -> None:
    from canary.transactions.headers import check_header

    check_header("X-Api-Key", "{{ secret.KEY }}")
    check_header("X-Tab", "a\tb")
    for name, value, message in [
        ("X Bad", "v", "has a space"),
        ("", "v", "cannot be empty"),
        ("X-Ok", "s3cret\r\nX: y", "X-Ok: header value has a line break"),
        ("X-Ok", "s3cret\x7f", "control character"),
        ("X-Ok", "s3cret€", "not Latin-1"),
    ]:
        with pytest.raises(ValueError, match=message) as info:
            check_header(name, value)
        assert "s3cret" not in str(info.value)
