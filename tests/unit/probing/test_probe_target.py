"""Where requests go (targets, re-pointing) and what results may show (redaction)."""

from __future__ import annotations

import pytest

from canary.probing.redact import Redactor
from canary.probing.target import origin, resolve

ENTRY = origin("https://shop.example.com/")


@pytest.mark.parametrize(
    ("url", "base", "want"),
    [
        ("/api/cart", "http://10.0.0.5:8080", "http://10.0.0.5:8080/api/cart"),
        ("/api/cart?x=1", "http://canary:80/", "http://canary:80/api/cart?x=1"),
        ("api/cart", "http://lb/canary", "http://lb/canary/api/cart"),
        ("https://shop.example.com/api?q=1", "http://c:1", "http://c:1/api?q=1"),
        ("https://SHOP.example.com:443/x", "http://c:1", "http://c:1/x"),
        ("https://shop.example.com", "http://c:1/", "http://c:1/"),
        ("http://shop.example.com/x", "http://c:1", "http://shop.example.com/x"),
        ("https://auth.example.com/token", "http://c:1", "https://auth.example.com/token"),
    ],
)
def test_resolve(url: str, base: str, want: str) -> None:
    assert resolve(url, base, ENTRY) == want


def test_redactor_hides_every_form_of_a_secret() -> None:
    r = Redactor(["p@ss word"])
    assert r("pw=p%40ss%20word&x=p%40ss+word raw=p@ss word") == "pw=***&x=*** raw=***"
    assert r(None) is None and Redactor()("abc") == "abc"
