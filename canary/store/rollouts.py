"""The store's rollout part: records, the service claim, the coordinator lock, events, commands."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from canary.errors import StoreError
from canary.rollout.record import RolloutRecord
from canary.rollout.state import FINAL as _FINAL_STATES
from canary.store.base import StoreBase, mapped

# Lock key → token of the locks this process took and could not release (Redis was away).
_STRANDED: dict[str, str] = {}
_STRANDED_LOCK = threading.Lock()

# Caps and lifetimes: every key that grows is bounded.
EVENTS_MAXLEN = 20_000
ROLLOUTS_KEPT = 1_000


def engine_state(raw: bytes | str | None, record: dict[str, Any] | None) -> dict[str, Any] | None:
    """The judge's state from its own key's value, else from inside ``record``: records written
    before the state had its own key carried it there (load_record moves it)."""
    if raw:
        got: dict[str, Any] = json.loads(raw)
        return got
    legacy = (record or {}).get("engine")
    return dict(legacy) if legacy else None


@dataclass(frozen=True)
class EngineRead:
    """The judge's state as read: its etag (the fence of the save that wrote it, '' for none),
    and the state, unless ``unchanged``: the etag was the caller's, so its copy is current."""

    etag: str
    state: dict[str, Any] | None
    unchanged: bool = False


@dataclass(frozen=True)
class Command:
    """An operator command waiting for the coordinator, with the id its sender waits on."""

    command: str
    id: str | None = None

    @classmethod
    def from_json(cls, raw: str) -> Command:
        # Plain words were queued before commands had ids.
        if not raw.startswith("{"):
            return cls(raw)
        d = json.loads(raw)
        return cls(str(d["command"]), d.get("id"))


class RolloutStore(StoreBase):
    """Rollout records and what hangs off them (events, operator commands, lock, service)."""

    # --- rollouts --------------------------------------------------------------------------

    def create_rollout(self, record: dict[str, Any]) -> None:
        rid = record["id"]
        with mapped(f"cannot create rollout {rid}"):
            if not self.r.set(self.keys.rollout(rid), json.dumps(record), nx=True):
                raise StoreError(f"rollout {rid} already exists")
            self.r.set(self.keys.saved_fence(rid), int(record.get("fence") or 0))
            self.r.zadd(self.keys.rollouts(), {rid: time.time()})
            # Keep the index bounded: drop the oldest ids beyond the cap.
            self.r.zremrangebyrank(self.keys.rollouts(), 0, -ROLLOUTS_KEPT - 1)

    def create_record(self, record: RolloutRecord) -> None:
        """Persist a new typed record (see create_rollout)."""
        self.create_rollout(record.to_dict())

    def load_rollout(self, rollout_id: str) -> dict[str, Any] | None:
        """The record as plain JSON (what the edges read; the judge state is apart)."""
        with mapped(f"cannot read rollout {rollout_id}"):
            raw = self.r.get(self.keys.rollout(rollout_id))
        return json.loads(raw) if raw else None

    def load_record(self, rollout_id: str) -> RolloutRecord | None:
        """The typed record, its config parsed once."""
        raw = self.load_rollout(rollout_id)
        if raw is None:
            return None
        if raw.get("engine"):
            # Written before the judge state had its own key: move it there before the record
            # is saved without it, so a rollout in flight keeps its evidence.
            with mapped(f"cannot move the judge state of {rollout_id}"):
                self.r.set(self.keys.engine(rollout_id), json.dumps(raw["engine"]), nx=True)
        return RolloutRecord.from_dict(raw)

    def load_engine(self, rollout_id: str) -> dict[str, Any] | None:
        """The judge's state saved with the record, or None (none yet, or a stateless judge)."""
        with mapped(f"cannot read the judge state of {rollout_id}"):
            raw = self.r.get(self.keys.engine(rollout_id))
        return engine_state(raw, None if raw else self.load_rollout(rollout_id))

    def engine_if_changed(self, rollout_id: str, etag: str | None) -> EngineRead:
        """The judge's state unless its etag is still ``etag`` (the caller's copy is current;
        None: the caller keeps none).

        One small read when the copy is current, rather than the whole state and its parsing.
        """
        key = self.keys.engine_etag(rollout_id)
        with mapped(f"cannot read the judge state of {rollout_id}"):
            saved = str(self.r.get(key) or "")
        if etag is not None and saved == etag:
            return EngineRead(saved, None, unchanged=True)
        return EngineRead(saved, self.load_engine(rollout_id))

    def save_rollout(self, record: dict[str, Any], *, finished: bool = False) -> bool:
        """Write the record unless a holder with a newer fencing token already did."""
        return self._save(record["id"], record, int(record.get("fence") or 0), finished, None)

    def save_record(self, record: RolloutRecord, *, engine: dict[str, Any] | None = None) -> bool:
        """Write a typed record (and the judge's state, when given) in one fenced step.

        A finished record (and its events, windows, judge state) expires after a month, and the
        service it steered is free for the next rollout.
        """
        return self._save(record.id, record.to_dict(), record.fence, record.final, engine)

    def _save(
        self,
        rid: str,
        doc: dict[str, Any],
        fence: int,
        finished: bool,
        engine: dict[str, Any] | None,
    ) -> bool:
        service = str(doc.get("service") or "")
        with mapped(f"cannot save rollout {rid}"):
            ok = bool(
                self.scripts["save_fenced"](
                    keys=[
                        self.keys.rollout(rid),
                        self.keys.saved_fence(rid),
                        self.keys.engine(rid),
                        self.keys.service_rollout(service),
                        self.keys.engine_etag(rid),
                    ],
                    args=[
                        json.dumps(doc),
                        fence,
                        self.finished_ttl_s if finished else 0,
                        json.dumps(engine) if engine is not None else "",
                        rid,
                    ],
                )
            )
            if ok and finished:
                for key in (
                    self.keys.events(rid),
                    self.keys.windows(rid),
                    self.keys.answers(rid),
                    self.keys.control(rid),
                ):
                    self.r.expire(key, self.finished_ttl_s)
            return ok

    def list_rollouts(self, limit: int = 50) -> list[dict[str, Any]]:
        with mapped("cannot list rollouts"):
            ids = self.r.zrevrange(self.keys.rollouts(), 0, limit - 1)
            if not ids:
                return []
            raws = self.r.mget([self.keys.rollout(i) for i in ids])
        return [json.loads(raw) for raw in raws if raw]

    # --- the one rollout steering each service ----------------------------------------------

    def take_service(
        self, service: str, rollout_id: str, *, replacing: str | None = None
    ) -> str | None:
        """Make ``rollout_id`` the one rollout steering ``service``.

        Returns None when it now is, else the id of the unfinished rollout that holds the
        service (unless it is ``replacing``). A holder whose record is gone or finished is
        stale and is taken over.
        """
        key = self.keys.service_rollout(service)
        take = self.scripts["take_service"]
        with mapped(f"cannot claim service {service}"):
            holder = take(keys=[key], args=[rollout_id, replacing or ""])
            if holder is None:
                return None
            held = self.load_rollout(str(holder))
            if held is None or held.get("state") in _FINAL_STATES:
                holder = take(keys=[key], args=[rollout_id, str(holder)])
                if holder is None:
                    return None
            return str(holder)

    def service_holder(self, service: str) -> str | None:
        """The unfinished rollout steering ``service``, if any."""
        with mapped(f"cannot read service {service}"):
            got = self.r.get(self.keys.service_rollout(service))
        return str(got) if got else None

    def release_service(self, service: str, rollout_id: str) -> None:
        """Free ``service`` if ``rollout_id`` holds it (a rollout that could not be created)."""
        with mapped(f"cannot release service {service}"):
            self.scripts["release_lock"](
                keys=[self.keys.service_rollout(service)], args=[rollout_id]
            )

    # --- coordinator lock with fencing -----------------------------------------------------

    @contextmanager
    def lock(
        self, rollout_id: str, *, ttl_s: float = 60.0, wait_s: float = 0.0
    ) -> Iterator[int | None]:
        """Hold the rollout's lock; yields a fencing token, or None when another holder has it."""
        token = f"{uuid.uuid4().hex}"
        key = self.keys.lock(rollout_id)
        self._release_stranded()
        deadline = time.monotonic() + wait_s
        acquired = False
        while True:
            with mapped(f"cannot lock rollout {rollout_id}"):
                if self.r.set(key, token, nx=True, px=int(ttl_s * 1000)):
                    acquired = True
                    break
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        if not acquired:
            yield None
            return
        try:
            with mapped(f"cannot take the fencing token of {rollout_id}"):
                fence = int(self.r.incr(self.keys.fence(rollout_id)))
            yield fence
        finally:
            try:
                with mapped(f"cannot unlock rollout {rollout_id}"):
                    self.scripts["release_lock"](keys=[key], args=[token])
            except StoreError:
                # Redis went away with the lock held (a restart keeps it, appendonly): the
                # task's retry would wait out its ttl (a minute) for a lock nobody holds, so
                # this process releases it as soon as it can, before its next lock.
                with _STRANDED_LOCK:
                    _STRANDED[key] = token
                raise

    def _release_stranded(self) -> None:
        """Release the locks this process could not release while Redis was away."""
        with _STRANDED_LOCK:
            stranded = list(_STRANDED.items())
        for key, token in stranded:
            try:
                with mapped("cannot release a lock left while Redis was away"):
                    self.scripts["release_lock"](keys=[key], args=[token])
            except StoreError:
                continue
            with _STRANDED_LOCK:
                if _STRANDED.get(key) == token:
                    del _STRANDED[key]

    # --- events ----------------------------------------------------------------------------

    def append_event(self, rollout_id: str, kind: str, data: dict[str, Any]) -> str:
        entry = {"type": kind, "t": f"{time.time():.3f}", "data": json.dumps(data)}
        with mapped(f"cannot append event to {rollout_id}"):
            return str(
                self.r.xadd(
                    self.keys.events(rollout_id), entry, maxlen=EVENTS_MAXLEN, approximate=True
                )
            )

    def read_events(
        self, rollout_id: str, after: str = "0-0", *, block_ms: int | None = None, count: int = 500
    ) -> list[tuple[str, dict[str, Any]]]:
        """Events after id ``after``; blocks up to ``block_ms`` when there are none yet."""
        key = self.keys.events(rollout_id)
        with mapped(f"cannot read the events of {rollout_id}"):
            if block_ms is None:
                rows = self.r.xrange(key, min=f"({after}" if after != "0-0" else "-", count=count)
            else:
                got = self.r.xread({key: after}, count=count, block=block_ms)
                rows = got[0][1] if got else []
        out = []
        for eid, fields in rows:
            out.append(
                (
                    eid,
                    {
                        "type": fields["type"],
                        "t": float(fields["t"]),
                        "data": json.loads(fields["data"]),
                    },
                )
            )
        return out

    # --- control commands (pause, resume, promote, abort) ----------------------------------

    def push_control(self, rollout_id: str, command: str, *, command_id: str | None = None) -> None:
        key = self.keys.control(rollout_id)
        with mapped(f"cannot queue {command} for {rollout_id}"):
            self.r.rpush(key, json.dumps({"command": command, "id": command_id}))
            self.r.expire(key, self.finished_ttl_s)

    def pop_controls(self, rollout_id: str) -> list[Command]:
        """Take every queued command, oldest first."""
        key = self.keys.control(rollout_id)
        with mapped(f"cannot read the commands of {rollout_id}"):
            pipe = self.r.pipeline()
            pipe.lrange(key, 0, -1)
            pipe.delete(key)
            got, _ = pipe.execute()
        return [Command.from_json(raw) for raw in got]

    def answer_command(self, rollout_id: str, command_id: str, answer: str) -> None:
        """Remember what became of a command, for the task that sent it."""
        key = self.keys.answers(rollout_id)
        with mapped(f"cannot answer a command of {rollout_id}"):
            pipe = self.r.pipeline()
            pipe.hset(key, command_id, answer)
            pipe.expire(key, self.finished_ttl_s)
            pipe.execute()

    def command_answer(self, rollout_id: str, command_id: str) -> str | None:
        with mapped(f"cannot read a command of {rollout_id}"):
            got = self.r.hget(self.keys.answers(rollout_id), command_id)
        return str(got) if got is not None else None
