"""Keeping secrets out of results, errors and logs."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = "***"


class Redactor:
    """Replaces every known secret (and its URL-encoded forms) with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._forms: set[str] = set()
        for s in secrets:
            self.add(s)

    def add(self, secret: str) -> None:
        if not secret:
            return
        # A secret in a query string appears percent-encoded in the URL we record.
        self._forms.update({secret, quote(secret, safe=""), quote(secret), quote_plus(secret)})

    def __call__(self, text: str | None) -> str | None:
        if not text or not self._forms:
            return text
        for form in sorted(self._forms, key=len, reverse=True):
            if form in text:
                text = text.replace(form, MASK)
        return text

    def text(self, text: str) -> str:
        return self(text) or ""
