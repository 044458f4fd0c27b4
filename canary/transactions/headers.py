"""Which HTTP header names and values may be sent: RFC 9110 tokens, printable values, no line breaks.

Used at load time by the transaction models (and meant for every other place a user's file
names headers, such as a rollout's ``stable/canary.headers``), and at run time on rendered
template values. Messages never quote a value: it may be a secret.
"""

from __future__ import annotations

import re
import string

_TOKEN = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")
TOKEN_CHARS = "letters, digits and !#$%&'*+-.^_`|~"
# Anything check_header_value refuses: control characters but tab, DEL, beyond Latin-1, and
# whitespace at either end.
_SUSPECT = re.compile("[\x00-\x08\x0a-\x1f\x7f\u0100-\U0010ffff]|^[ \t]|[ \t]$")


def check_header_name(name: str) -> str:
    """``name`` if it is a valid header name, else ValueError saying what is wrong with it."""
    if not name:
        raise ValueError("a header name cannot be empty")
    bad = next((c for c in name if c not in _TOKEN), None)
    if bad is not None:
        what = {" ": "a space", "\t": "a tab", ":": "a ':'", "\r": "a CR", "\n": "a line break"}
        shown = what.get(bad, repr(bad))
        raise ValueError(f"header name {name!r} has {shown}: names are only {TOKEN_CHARS}")
    return name


def check_header_value(value: str) -> str:
    """``value`` if it can be sent as a header value, else ValueError (without the value)."""
    if not _SUSPECT.search(value):  # the common case, on every request: one C-level scan
        return value
    for c in value:
        if c in "\r\n":
            # A line break would let the value smuggle more headers or a second request.
            raise ValueError("header value has a line break (CR or LF)")
        if c == "\0" or (ord(c) < 32 and c != "\t") or ord(c) == 127:
            raise ValueError(f"header value has the control character {c!r}")
        if ord(c) > 255:
            raise ValueError("header value has a character HTTP/1.1 cannot send (not Latin-1)")
    if value[:1] in (" ", "\t") or value[-1:] in (" ", "\t"):
        raise ValueError("header value starts or ends with whitespace")
    return value


def check_header(name: str, value: str) -> None:
    """Raise ValueError unless ``name: value`` is a header that can be sent as written."""
    check_header_name(name)
    try:
        check_header_value(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
