"""What every part of the store shares: the client, the key names, the Lua scripts, error mapping."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from importlib.resources import files
from typing import Any

import redis

from canary.errors import StoreError
from canary.probing.result import TransactionResult
from canary.settings import load_settings
from canary.store.keys import Keys
from canary.store.retention import finished_ttl_s, results_ttl_s

# Every script in canary/store/lua/, by file name without ".lua".
SCRIPTS = (
    "claim_tick",
    "judge_window",
    "look",
    "record_batch",
    "record_interim",
    "refresh_claim",
    "release_lock",
    "save_fenced",
    "seal_window",
    "take_service",
)

# Pieces of lua/ a script starts with: Redis runs each script on its own, so a helper two scripts
# share is prepended to their text rather than called.
USES: dict[str, tuple[str, ...]] = {
    "judge_window": ("add_chunked",),
    "record_batch": ("add_chunked",),
    "seal_window": ("add_chunked",),
}


def _read(name: str) -> str:
    return files("canary.store").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


@cache
def lua_source(name: str) -> str:
    """The text of the script ``name`` shipped in canary/store/lua/, with the pieces it uses."""
    if name not in SCRIPTS:
        raise StoreError(f"unknown Lua script {name!r}; known: {', '.join(SCRIPTS)}")
    return "".join(_read(piece) for piece in (*USES.get(name, ()), name))


def parse_results(raws: Sequence[str]) -> list[TransactionResult]:
    """Results as the store keeps them (one JSON object each), parsed in one ``json.loads``:
    a third cheaper than one call per result, and checks and step ends parse hundreds."""
    if not raws:
        return []
    return [TransactionResult.from_dict(d) for d in json.loads("[" + ",".join(raws) + "]")]


@contextmanager
def mapped(what: str) -> Iterator[None]:
    """Turn any Redis failure inside the block into a StoreError saying what could not be done.

    Callers of the store then catch one error type, whatever the client raised.
    """
    try:
        yield
    except redis.RedisError as exc:
        raise StoreError(f"{what}: {exc}") from exc


class StoreBase:
    """The client, the keys and the registered scripts the store's parts share."""

    def __init__(self, client: redis.Redis, keys: Keys | None = None) -> None:
        # Any: redis-py's types cannot express decode_responses=True (every reply is str here).
        self.r: Any = client
        self.keys = keys or Keys(load_settings().key_prefix)
        # Read when the store is made, so a bad CANARY_RESULTS_TTL stops a process at start.
        self.results_ttl_s = results_ttl_s()
        self.finished_ttl_s = finished_ttl_s(self.results_ttl_s)
        # register_script only hashes the text: nothing is sent until a script first runs.
        self.scripts: dict[str, Any] = {
            name: self.r.register_script(lua_source(name)) for name in SCRIPTS
        }
