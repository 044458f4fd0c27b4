"""The redactor masks a secret in every form it is sent or echoed in."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus

import pytest

from canary.probing.redact import MASK, Redactor

SECRET = 'pa"ss wörd\\/'


@pytest.mark.parametrize(
    "form",
    [
        SECRET,
        quote(SECRET, safe=""),
        quote_plus(SECRET),
        json.dumps(SECRET)[1:-1],
        json.dumps(SECRET, ensure_ascii=False)[1:-1],
        json.dumps(json.dumps({"k": SECRET}))[1:-1],  # a JSON body echoed inside JSON
        repr(SECRET)[1:-1],
        quote(json.dumps(SECRET)[1:-1], safe=""),
    ],
)
def test_every_encoded_form_of_a_secret_is_masked(form: str) -> None:
    r = Redactor([SECRET])
    text = f"found {form!s} here"
    assert r.text(text).count(MASK) >= 1
    assert (
        SECRET not in r.text(text)
        and "wörd" not in r.text(text)
        and "w\\u00f6rd" not in r.text(text)
    )


def test_basic_auth_is_masked_as_the_header_value_it_becomes() -> None:
    r = Redactor()
    r.add_basic("bob", "hunter2")
    token = base64.b64encode(b"bob:hunter2").decode()
    assert r.text(f'found "Basic {token}"') == f'found "Basic {MASK}"'
    assert r.text("password hunter2") == f"password {MASK}"
    r.add_basic("bob", "pässwort€")  # not Latin-1: sent as UTF-8
    assert r.text(base64.b64encode("bob:pässwort€".encode()).decode()) == MASK


def test_a_secret_cut_short_by_a_message_is_masked_too() -> None:
    r = Redactor(["hunter2-long-secret"])
    assert r.text('found "token=hunter2-lo…"') == f'found "token={MASK}…"'
    assert r.text("ab…") == "ab…"  # too short to tell anything


def test_found_and_no_secrets() -> None:
    r = Redactor()
    assert r.text("nothing") == "nothing" and r(None) is None
    r.add("s3cr3t")
    assert r.found('{"k": "s3cr3t"}') and not r.found("other")
