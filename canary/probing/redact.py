"""Keeping secrets out of results, errors and logs, in every form in which a secret is sent."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterable
from urllib.parse import quote, quote_plus

MASK = "***"
ELLIPSIS = "…"
# A cut-off secret ("hunt…") still tells its start: prefixes this long or longer are masked too.
_MIN_PREFIX = 3


# A secret in a JSON body that a server echoes inside JSON, which an error message quotes as
# JSON again, is escaped three times over.
_JSON_LEVELS = 3


def _escaped(text: str) -> set[str]:
    """``text`` as JSON strings show it (up to _JSON_LEVELS deep, ASCII or not) and as repr."""
    out = {text, repr(text)[1:-1]}
    level = {text}
    for _ in range(_JSON_LEVELS):
        level = {json.dumps(f, ensure_ascii=a)[1:-1] for f in level for a in (False, True)}
        out |= level
    return out


class Redactor:
    """Replaces every known secret with ``***``: raw, JSON-escaped, URL-encoded, in basic auth.

    A secret reaches text in the form it was sent or echoed in: a query string percent-encodes
    it, a JSON body escapes its quotes, basic auth base64-encodes ``user:password``, and an
    error message may quote it as Python's repr. Each form of each secret is masked, and so is
    the start of one that a message cut short (``"hunt…"``).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._forms: set[str] = set()
        self._ordered: list[str] = []
        for s in secrets:
            self.add(s)

    def add(self, secret: str) -> None:
        if not secret or secret in self._secrets:
            return
        self._secrets.add(secret)
        forms = _escaped(secret)
        for form in {
            secret,
            json.dumps(secret)[1:-1],
            json.dumps(secret, ensure_ascii=False)[1:-1],
        }:
            forms.update({quote(form, safe=""), quote(form), quote_plus(form)})
        self._learn(forms)

    def add_basic(self, username: str, password: str) -> None:
        """A basic-auth credential: the password, and the header value it becomes."""
        self.add(password)
        for encoding in ("latin-1", "utf-8"):  # requests sends latin-1 when it can
            try:
                raw = f"{username}:{password}".encode(encoding)
            except UnicodeEncodeError:
                continue
            self.add(base64.b64encode(raw).decode("ascii"))

    def _learn(self, forms: set[str]) -> None:
        self._forms.update(forms)
        # Longest first, so that a form containing another is masked whole.
        self._ordered = sorted(self._forms, key=len, reverse=True)

    def __call__(self, text: str | None) -> str | None:
        if not text or not self._forms:
            return text
        for form in self._ordered:
            if form in text:
                text = text.replace(form, MASK)
        if ELLIPSIS in text:
            text = self._cut_short(text)
        return text

    def _cut_short(self, text: str) -> str:
        parts = text.split(ELLIPSIS)
        for i, part in enumerate(parts[:-1]):
            for form in self._ordered:
                for k in range(min(len(form) - 1, len(part)), _MIN_PREFIX - 1, -1):
                    if part.endswith(form[:k]):
                        part = part[:-k] + MASK
                        break
            parts[i] = part
        return ELLIPSIS.join(parts)

    def found(self, text: str) -> bool:
        """Whether ``text`` holds a known secret in any form."""
        return any(form in text for form in self._ordered)

    def text(self, text: str) -> str:
        return self(text) or ""


# Modules whose debug lines quote a request as sent (a secret in a query string included).
_QUOTING_LOGGERS = (
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.response",
    "urllib3.util.retry",
)


class _OutsideProbes(logging.Filter):
    """Drops the records of a library's logger made while this thread runs a probe exchange.

    Those lines cannot be redacted (the library knows no secrets) and say nothing the prober's
    own debug line for each request does not say, redacted.
    """

    def __init__(self, in_probe: Callable[[], bool]) -> None:
        super().__init__()
        self.in_probe = in_probe

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.in_probe()


def quiet_libraries_in_probes(in_probe: Callable[[], bool]) -> None:
    """Keep the HTTP libraries' own log lines about probe requests out of the logs (idempotent)."""
    for name in _QUOTING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _OutsideProbes) for f in logger.filters):
            logger.addFilter(_OutsideProbes(in_probe))
