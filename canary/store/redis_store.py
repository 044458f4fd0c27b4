"""Reading and writing rollouts, events, probe results and stable history in Redis.

Recording a batch is atomic and idempotent: a Lua script adds the batch id to the window's set
and appends the results only when the id was new, so a batch re-delivered after its worker died
is never counted twice.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis

from canary.errors import StoreError
from canary.probing.result import TransactionResult
from canary.rollout.record import RolloutRecord
from canary.rollout.state import FINAL as _FINAL_STATES
from canary.settings import load_settings
from canary.store.keys import Keys

# Caps and lifetimes: every key that grows is bounded.
EVENTS_MAXLEN = 20_000
ROLLOUTS_KEPT = 1_000
HISTORY_KEPT = 5_000
MONITORS_KEPT = 1_000
FINISHED_TTL_S = 30 * 24 * 3600
RESULTS_TTL_S = 30 * 24 * 3600
# The look-ahead copy only serves the interim checks of a running window; the batch record stays
# the truth, so a day is plenty.
INTERIM_TTL_S = 24 * 3600
# ... and once its window is sealed, a few minutes (for a look at what was pushed, not more).
SEALED_INTERIM_TTL_S = 300

# KEYS: batches, results, sealed, meta. ARGV: batch id, ttl, meta JSON (or ''), results...
# Returns -1 when the window was already judged (the batch is refused, so a judged window never
# changes), 0 when the batch was recorded before, else how many batches the window now has.
_RECORD_BATCH = """
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('EXPIRE', KEYS[1], ARGV[2])
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[3])
  redis.call('EXPIRE', KEYS[4], ARGV[2])
end
-- unpack() is bounded by Lua's C stack, so large batches are appended in chunks.
local i = 4
while i <= #ARGV do
  local j = math.min(i + 999, #ARGV)
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, j))
  i = j + 1
end
if #ARGV >= 4 then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
return redis.call('SCARD', KEYS[1])
"""

# KEYS: interim, sealed. ARGV: ttl, then result id and result JSON pairs.
# Returns -1 when the window was already judged, else how many results were new: a probe slot's
# id is the same in every delivery of its batch, so a re-run never adds it twice.
_RECORD_INTERIM = """
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
local new = 0
for i = 2, #ARGV - 1, 2 do
  new = new + redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1])
end
if #ARGV > 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return new
"""

# KEYS: sealed, batches, missing[, interim, results, lookahead]. ARGV: ttl, expected batch ids...
# Seals the window and returns the batches recorded before the seal; the others are missing.
# With the last three keys (an interim rollback cuts the window short), the look-ahead results
# of the missing batches join the window's results, since those batches will now be refused:
# every probe slot is then counted once, from its batch record or else from the look-ahead.
_SEAL_WINDOW = """
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
local recorded = redis.call('SMEMBERS', KEYS[2])
local have = {}
for _, b in ipairs(recorded) do have[b] = true end
local missing = {}
local absent = {}
for i = 2, #ARGV do
  if not have[ARGV[i]] then
    missing[#missing + 1] = ARGV[i]
    absent[ARGV[i]] = true
  end
end
redis.call('DEL', KEYS[3])
local i = 1
while i <= #missing do
  local j = math.min(i + 999, #missing)
  redis.call('SADD', KEYS[3], unpack(missing, i, j))
  i = j + 1
end
if #missing > 0 then redis.call('EXPIRE', KEYS[3], ARGV[1]) end
if #KEYS >= 6 then
  local entries = redis.call('HGETALL', KEYS[4])
  local kept = 0
  for i = 1, #entries - 1, 2 do
    -- result id: batch id, then the probe's index and version
    local batch = string.match(entries[i], '^(.*):[^:]*:[^:]*$')
    if batch and absent[batch] then
      redis.call('RPUSH', KEYS[5], entries[i + 1])
      kept = kept + 1
    end
  end
  if kept > 0 then redis.call('EXPIRE', KEYS[5], ARGV[1]) end
  redis.call('SET', KEYS[6], kept, 'EX', ARGV[1])
end
return recorded
"""

_REFRESH_CLAIM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# Fencing: a coordinator whose lock expired while it stalled must not overwrite the newer
# holder's writes, so a save carries its token and is refused when a larger one was stored.
# The token saved last has its own key, so the check never decodes the record.
# KEYS: record, saved fence, judge state, service. ARGV: record JSON, fence, ttl (0: keep for
# good), judge state JSON ('' leaves it as it is), rollout id.
# With a ttl (the rollout ended) the service is released when this rollout still holds it.
_SAVE_FENCED = """
local saved = tonumber(redis.call('GET', KEYS[2]) or '0')
if saved > tonumber(ARGV[2]) then return 0 end
local ttl = tonumber(ARGV[3])
local function put(key, value)
  if ttl > 0 then redis.call('SET', key, value, 'EX', ttl) else redis.call('SET', key, value) end
end
put(KEYS[1], ARGV[1])
put(KEYS[2], ARGV[2])
if ARGV[4] ~= '' then put(KEYS[3], ARGV[4]) elseif ttl > 0 then redis.call('EXPIRE', KEYS[3], ttl) end
if ttl > 0 and redis.call('GET', KEYS[4]) == ARGV[5] then redis.call('DEL', KEYS[4]) end
return 1
"""

# KEYS: service. ARGV: new holder, the holder it may replace ('' for none).
_TAKE_SERVICE = """
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[2] and cur ~= ARGV[1] then return cur end
redis.call('SET', KEYS[1], ARGV[1])
return false
"""

# KEYS: the monitor's tick key. ARGV: interval (s), ttl (s). On Redis's clock, so that beats and
# workers on hosts whose clocks disagree still agree. Mirrors canary.monitor.next_tick: returns the
# new tick time when due (and stores it), else nil; ticks keep their cadence (last + interval)
# unless a whole interval was skipped, so a slow tick does not make the series drift.
_CLAIM_TICK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local last = tonumber(redis.call('GET', KEYS[1]) or '')
local nxt
if last == nil or now - last >= 2 * interval or now < last - interval then
  nxt = now
elseif now - last >= interval then
  nxt = last + interval
else
  return nil
end
local value = string.format('%.6f', nxt)
redis.call('SET', KEYS[1], value, 'EX', ARGV[2])
return value
"""

_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


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


def connect(url: str | None = None) -> redis.Redis:
    """A client for ``url`` (default: CANARY_REDIS_URL), answering str, with short timeouts."""
    url = url or load_settings().redis_url or "redis://127.0.0.1:6379/0"
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=30,
    )


class Store:
    """All of canary's Redis reads and writes, behind names rather than key strings."""

    def __init__(self, client: redis.Redis, keys: Keys | None = None) -> None:
        # Any: redis-py's types cannot express decode_responses=True (every reply is str here).
        self.r: Any = client
        self.keys = keys or Keys(load_settings().key_prefix)
        self._record = self.r.register_script(_RECORD_BATCH)
        self._release = self.r.register_script(_RELEASE_LOCK)
        self._save_fenced = self.r.register_script(_SAVE_FENCED)
        self._seal = self.r.register_script(_SEAL_WINDOW)
        self._record_interim = self.r.register_script(_RECORD_INTERIM)
        self._refresh_claim = self.r.register_script(_REFRESH_CLAIM)
        self._claim_tick = self.r.register_script(_CLAIM_TICK)
        self._take_service = self.r.register_script(_TAKE_SERVICE)

    @classmethod
    def from_url(cls, url: str | None = None) -> Store:
        return cls(connect(url))

    # --- rollouts --------------------------------------------------------------------------

    def create_rollout(self, record: dict[str, Any]) -> None:
        rid = record["id"]
        try:
            if not self.r.set(self.keys.rollout(rid), json.dumps(record), nx=True):
                raise StoreError(f"rollout {rid} already exists")
            self.r.set(self.keys.saved_fence(rid), int(record.get("fence") or 0))
            self.r.zadd(self.keys.rollouts(), {rid: time.time()})
            # Keep the index bounded: drop the oldest ids beyond the cap.
            self.r.zremrangebyrank(self.keys.rollouts(), 0, -ROLLOUTS_KEPT - 1)
        except redis.RedisError as exc:
            raise StoreError(f"cannot create rollout {rid}: {exc}") from exc

    def create_record(self, record: RolloutRecord) -> None:
        """Persist a new typed record (see create_rollout)."""
        self.create_rollout(record.to_dict())

    def load_rollout(self, rollout_id: str) -> dict[str, Any] | None:
        """The record as plain JSON (what the edges read; the judge state is apart)."""
        try:
            raw = self.r.get(self.keys.rollout(rollout_id))
        except redis.RedisError as exc:
            raise StoreError(f"cannot read rollout {rollout_id}: {exc}") from exc
        return json.loads(raw) if raw else None

    def load_record(self, rollout_id: str) -> RolloutRecord | None:
        """The typed record, its config parsed once."""
        raw = self.load_rollout(rollout_id)
        if raw is None:
            return None
        if raw.get("engine"):
            # Written before the judge state had its own key: move it there before the record
            # is saved without it, so a rollout in flight keeps its evidence.
            try:
                self.r.set(self.keys.engine(rollout_id), json.dumps(raw["engine"]), nx=True)
            except redis.RedisError as exc:
                raise StoreError(f"cannot move the judge state of {rollout_id}: {exc}") from exc
        return RolloutRecord.from_dict(raw)

    def load_engine(self, rollout_id: str) -> dict[str, Any] | None:
        """The judge's state saved with the record, or None (none yet, or a stateless judge)."""
        try:
            raw = self.r.get(self.keys.engine(rollout_id))
        except redis.RedisError as exc:
            raise StoreError(f"cannot read the judge state of {rollout_id}: {exc}") from exc
        if raw:
            got: dict[str, Any] = json.loads(raw)
            return got
        # Records written before the state had its own key carried it inside (load_record
        # moves it).
        legacy = (self.load_rollout(rollout_id) or {}).get("engine")
        return dict(legacy) if legacy else None

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
        try:
            ok = bool(
                self._save_fenced(
                    keys=[
                        self.keys.rollout(rid),
                        self.keys.saved_fence(rid),
                        self.keys.engine(rid),
                        self.keys.service_rollout(service),
                    ],
                    args=[
                        json.dumps(doc),
                        fence,
                        FINISHED_TTL_S if finished else 0,
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
                    self.r.expire(key, FINISHED_TTL_S)
            return ok
        except redis.RedisError as exc:
            raise StoreError(f"cannot save rollout {rid}: {exc}") from exc

    def take_service(
        self, service: str, rollout_id: str, *, replacing: str | None = None
    ) -> str | None:
        """Make ``rollout_id`` the one rollout steering ``service``.

        Returns None when it now is, else the id of the unfinished rollout that holds the
        service (unless it is ``replacing``). A holder whose record is gone or finished is
        stale and is taken over.
        """
        key = self.keys.service_rollout(service)
        try:
            holder = self._take_service(keys=[key], args=[rollout_id, replacing or ""])
            if holder is None:
                return None
            held = self.load_rollout(str(holder))
            if held is None or held.get("state") in _FINAL_STATES:
                holder = self._take_service(keys=[key], args=[rollout_id, str(holder)])
                if holder is None:
                    return None
            return str(holder)
        except redis.RedisError as exc:
            raise StoreError(f"cannot claim service {service}: {exc}") from exc

    def service_holder(self, service: str) -> str | None:
        """The unfinished rollout steering ``service``, if any."""
        try:
            got = self.r.get(self.keys.service_rollout(service))
        except redis.RedisError as exc:
            raise StoreError(f"cannot read service {service}: {exc}") from exc
        return str(got) if got else None

    def release_service(self, service: str, rollout_id: str) -> None:
        """Free ``service`` if ``rollout_id`` holds it (a rollout that could not be created)."""
        try:
            self._release(keys=[self.keys.service_rollout(service)], args=[rollout_id])
        except redis.RedisError as exc:
            raise StoreError(f"cannot release service {service}: {exc}") from exc

    def list_rollouts(self, limit: int = 50) -> list[dict[str, Any]]:
        ids = self.r.zrevrange(self.keys.rollouts(), 0, limit - 1)
        if not ids:
            return []
        raws = self.r.mget([self.keys.rollout(i) for i in ids])
        return [json.loads(raw) for raw in raws if raw]

    # --- coordinator lock with fencing -----------------------------------------------------

    @contextmanager
    def lock(
        self, rollout_id: str, *, ttl_s: float = 60.0, wait_s: float = 0.0
    ) -> Iterator[int | None]:
        """Hold the rollout's lock; yields a fencing token, or None when another holder has it."""
        token = f"{uuid.uuid4().hex}"
        key = self.keys.lock(rollout_id)
        deadline = time.monotonic() + wait_s
        acquired = False
        while True:
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
            yield int(self.r.incr(self.keys.fence(rollout_id)))
        finally:
            self._release(keys=[key], args=[token])

    # --- events ----------------------------------------------------------------------------

    def append_event(self, rollout_id: str, kind: str, data: dict[str, Any]) -> str:
        entry = {"type": kind, "t": f"{time.time():.3f}", "data": json.dumps(data)}
        try:
            return str(
                self.r.xadd(
                    self.keys.events(rollout_id), entry, maxlen=EVENTS_MAXLEN, approximate=True
                )
            )
        except redis.RedisError as exc:
            raise StoreError(f"cannot append event to {rollout_id}: {exc}") from exc

    def read_events(
        self, rollout_id: str, after: str = "0-0", *, block_ms: int | None = None, count: int = 500
    ) -> list[tuple[str, dict[str, Any]]]:
        """Events after id ``after``; blocks up to ``block_ms`` when there are none yet."""
        key = self.keys.events(rollout_id)
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
        try:
            self.r.rpush(key, json.dumps({"command": command, "id": command_id}))
            self.r.expire(key, FINISHED_TTL_S)
        except redis.RedisError as exc:
            raise StoreError(f"cannot queue {command} for {rollout_id}: {exc}") from exc

    def pop_controls(self, rollout_id: str) -> list[Command]:
        """Take every queued command, oldest first."""
        key = self.keys.control(rollout_id)
        try:
            pipe = self.r.pipeline()
            pipe.lrange(key, 0, -1)
            pipe.delete(key)
            got, _ = pipe.execute()
        except redis.RedisError as exc:
            raise StoreError(f"cannot read the commands of {rollout_id}: {exc}") from exc
        return [Command.from_json(raw) for raw in got]

    def answer_command(self, rollout_id: str, command_id: str, answer: str) -> None:
        """Remember what became of a command, for the task that sent it."""
        key = self.keys.answers(rollout_id)
        try:
            pipe = self.r.pipeline()
            pipe.hset(key, command_id, answer)
            pipe.expire(key, FINISHED_TTL_S)
            pipe.execute()
        except redis.RedisError as exc:
            raise StoreError(f"cannot answer a command of {rollout_id}: {exc}") from exc

    def command_answer(self, rollout_id: str, command_id: str) -> str | None:
        try:
            got = self.r.hget(self.keys.answers(rollout_id), command_id)
        except redis.RedisError as exc:
            raise StoreError(f"cannot read a command of {rollout_id}: {exc}") from exc
        return str(got) if got is not None else None

    # --- results ---------------------------------------------------------------------------

    def record_batch(
        self,
        rollout_id: str,
        window: str,
        batch_id: str,
        results: Sequence[TransactionResult],
        *,
        meta: dict[str, Any] | None = None,
    ) -> bool:
        """Store a batch's results once; False when it was recorded before or came too late."""
        return self.record_batch_status(rollout_id, window, batch_id, results, meta=meta) > 0

    def record_batch_status(
        self,
        rollout_id: str,
        window: str,
        batch_id: str,
        results: Sequence[TransactionResult],
        *,
        meta: dict[str, Any] | None = None,
    ) -> int:
        """Like record_batch: -1 refused (window judged), 0 duplicate, n = batches now recorded."""
        payload = [json.dumps(r.to_dict()) for r in results]
        try:
            status = self._record(
                keys=[
                    self.keys.batches(rollout_id, window),
                    self.keys.results(rollout_id, window),
                    self.keys.sealed(rollout_id, window),
                    self.keys.batch_meta(rollout_id, window),
                ],
                args=[batch_id, RESULTS_TTL_S, json.dumps(meta) if meta else "", *payload],
            )
        except redis.RedisError as exc:
            raise StoreError(f"cannot record batch {batch_id}: {exc}") from exc
        return int(status)

    def set_expected(self, rollout_id: str, window: str, runs: dict[str, int]) -> None:
        """Remember which batches a window was dispatched with, and how many runs each carries."""
        if not runs:
            return
        key = self.keys.expected(rollout_id, window)
        try:
            pipe = self.r.pipeline()
            pipe.hset(key, mapping=runs)
            pipe.expire(key, RESULTS_TTL_S)
            pipe.execute()
        except redis.RedisError as exc:
            raise StoreError(f"cannot save the batches of {window}: {exc}") from exc

    def seal_window(
        self, rollout_id: str, window: str, expected: Sequence[str], *, keep_lookahead: bool = False
    ) -> set[str]:
        """Close a window to late batches; returns the batches recorded (the rest are missing).

        ``keep_lookahead`` (an interim rollback, which cuts the window short) also moves the
        look-ahead results of the missing batches into the window's results, in the same step.
        """
        keys = [
            self.keys.sealed(rollout_id, window),
            self.keys.batches(rollout_id, window),
            self.keys.missing(rollout_id, window),
        ]
        if keep_lookahead:
            keys += [
                self.keys.interim(rollout_id, window),
                self.keys.results(rollout_id, window),
                self.keys.lookahead(rollout_id, window),
            ]
        try:
            got = self._seal(keys=keys, args=[RESULTS_TTL_S, *expected])
            # The look-ahead only serves checks of a running window (and, just above, the
            # results of an interim rollback): once sealed nothing adds to it, so it goes soon.
            self.r.expire(self.keys.interim(rollout_id, window), SEALED_INTERIM_TTL_S)
        except redis.RedisError as exc:
            raise StoreError(f"cannot seal {window} of {rollout_id}: {exc}") from exc
        return set(got)

    def record_interim(
        self, rollout_id: str, window: str, entries: Sequence[tuple[str, TransactionResult]]
    ) -> int:
        """Push results of a running batch ahead of its record, keyed ``batch:k:version``.

        Returns how many were new, or -1 when the window was judged (nothing more is wanted).
        """
        args: list[Any] = [INTERIM_TTL_S]
        for result_id, result in entries:
            args += [result_id, json.dumps(result.to_dict())]
        try:
            got = self._record_interim(
                keys=[self.keys.interim(rollout_id, window), self.keys.sealed(rollout_id, window)],
                args=args,
            )
        except redis.RedisError as exc:
            raise StoreError(f"cannot push interim results of {window}: {exc}") from exc
        return int(got)

    def interim_results(self, rollout_id: str, window: str) -> list[TransactionResult]:
        """The look-ahead results pushed so far for a window, in time order."""
        try:
            raws = self.r.hvals(self.keys.interim(rollout_id, window))
        except redis.RedisError as exc:
            raise StoreError(f"cannot read interim results of {window}: {exc}") from exc
        got = [TransactionResult.from_dict(json.loads(raw)) for raw in raws]
        got.sort(key=lambda r: r.t)
        return got

    def is_sealed(self, rollout_id: str, window: str) -> bool:
        try:
            return bool(self.r.exists(self.keys.sealed(rollout_id, window)))
        except redis.RedisError as exc:
            raise StoreError(f"cannot read {window} of {rollout_id}: {exc}") from exc

    def window_accounting(self, rollout_id: str, window: str) -> dict[str, Any]:
        """Expected, recorded and missing batches of a window, and the results it holds.

        ``results`` are the runs of the recorded batches plus ``lookahead``.
        """
        pipe = self.r.pipeline()
        pipe.hgetall(self.keys.expected(rollout_id, window))
        pipe.smembers(self.keys.batches(rollout_id, window))
        pipe.smembers(self.keys.missing(rollout_id, window))
        pipe.llen(self.keys.results(rollout_id, window))
        pipe.exists(self.keys.sealed(rollout_id, window))
        pipe.hgetall(self.keys.batch_meta(rollout_id, window))
        pipe.get(self.keys.lookahead(rollout_id, window))
        expected, recorded, missing, n, sealed, meta, lookahead = pipe.execute()
        return {
            "expected": {k: int(v) for k, v in expected.items()},
            "recorded": set(recorded),
            "missing": set(missing),
            "results": int(n),
            "sealed": bool(sealed),
            "meta": {k: json.loads(v) for k, v in meta.items()},
            # Results of missing batches kept from the look-ahead (an interim rollback).
            "lookahead": int(lookahead or 0),
        }

    # --- batch claims: one runner per batch at a time ---------------------------------------

    def claim_batch(
        self, rollout_id: str, window: str, batch_id: str, owner: str, ttl_s: float
    ) -> bool:
        """Take a batch for ``owner`` unless someone whose claim is still alive has it."""
        key = self.keys.claim(rollout_id, window, batch_id)
        try:
            return bool(self.r.set(key, owner, nx=True, px=int(ttl_s * 1000)))
        except redis.RedisError as exc:
            raise StoreError(f"cannot claim batch {batch_id}: {exc}") from exc

    def refresh_claim(
        self, rollout_id: str, window: str, batch_id: str, owner: str, ttl_s: float
    ) -> bool:
        key = self.keys.claim(rollout_id, window, batch_id)
        return bool(self._refresh_claim(keys=[key], args=[owner, int(ttl_s * 1000)]))

    def refresh_claims(
        self, claims: Sequence[tuple[str, str, str, str]], ttl_s: float
    ) -> list[bool]:
        """``refresh_claim`` for many (rollout, window, batch, owner) in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for rollout_id, window, batch_id, owner in claims:
            key = self.keys.claim(rollout_id, window, batch_id)
            self._refresh_claim(keys=[key], args=[owner, int(ttl_s * 1000)], client=pipe)
        try:
            return [bool(x) for x in pipe.execute()]
        except redis.RedisError as exc:
            raise StoreError(f"cannot refresh {len(claims)} batch claims: {exc}") from exc

    def release_claim(self, rollout_id: str, window: str, batch_id: str, owner: str) -> None:
        key = self.keys.claim(rollout_id, window, batch_id)
        self._release(keys=[key], args=[owner])

    def recorded_batches(self, rollout_id: str, window: str) -> set[str]:
        try:
            return set(self.r.smembers(self.keys.batches(rollout_id, window)))
        except redis.RedisError as exc:
            raise StoreError(f"cannot read the batches of {window}: {exc}") from exc

    def add_window(self, rollout_id: str, window: str) -> None:
        key = self.keys.windows(rollout_id)
        if window not in self.r.lrange(key, 0, -1):
            self.r.rpush(key, window)

    def windows(self, rollout_id: str) -> list[str]:
        return list(self.r.lrange(self.keys.windows(rollout_id), 0, -1))

    def window_results(self, rollout_id: str, window: str) -> list[TransactionResult]:
        raws = self.r.lrange(self.keys.results(rollout_id, window), 0, -1)
        return [TransactionResult.from_dict(json.loads(raw)) for raw in raws]

    def all_results(self, rollout_id: str) -> list[TransactionResult]:
        out: list[TransactionResult] = []
        for w in self.windows(rollout_id):
            out.extend(self.window_results(rollout_id, w))
        out.sort(key=lambda r: r.t)
        return out

    # --- stable history across rollouts ----------------------------------------------------

    def add_history(self, service: str, results: Sequence[TransactionResult]) -> None:
        pipe = self.r.pipeline()
        touched: set[str] = set()
        for res in results:
            key = self.keys.history(service, res.transaction)
            pipe.rpush(key, json.dumps(res.to_dict(with_steps=False)))
            touched.add(key)
        for key in touched:
            pipe.ltrim(key, -HISTORY_KEPT, -1)
        pipe.execute()

    def history_size(self, service: str, transaction: str) -> int:
        """How many results the service's history holds for a transaction."""
        return int(self.r.llen(self.keys.history(service, transaction)))

    def history(
        self, service: str, transaction: str, *, since: float | None = None
    ) -> list[TransactionResult]:
        raws = self.r.lrange(self.keys.history(service, transaction), 0, -1)
        got = [TransactionResult.from_dict(json.loads(raw)) for raw in raws]
        return [r for r in got if since is None or r.t >= since]

    # --- continuous monitors of stable versions (canary/monitor.py) ---------------------------

    def save_monitor(self, record: dict[str, Any]) -> bool:
        """Add or replace the monitor of ``record["service"]``; True when it is new."""
        service = record["service"]
        key = self.keys.monitors()
        try:
            if not self.r.hexists(key, service) and self.r.hlen(key) >= MONITORS_KEPT:
                raise StoreError(f"there are already {MONITORS_KEPT} monitors; remove one first")
            return bool(self.r.hset(key, service, json.dumps(record)))
        except redis.RedisError as exc:
            raise StoreError(f"cannot save the monitor of {service}: {exc}") from exc

    def load_monitor(self, service: str) -> dict[str, Any] | None:
        try:
            raw = self.r.hget(self.keys.monitors(), service)
        except redis.RedisError as exc:
            raise StoreError(f"cannot read the monitor of {service}: {exc}") from exc
        return json.loads(raw) if raw else None

    def list_monitors(self) -> list[dict[str, Any]]:
        """Every monitor, by service name."""
        try:
            got = self.r.hgetall(self.keys.monitors())
        except redis.RedisError as exc:
            raise StoreError(f"cannot list monitors: {exc}") from exc
        return [json.loads(got[name]) for name in sorted(got)]

    def remove_monitor(self, service: str) -> bool:
        """Stop monitoring ``service`` (its history stays); False when it had no monitor."""
        try:
            pipe = self.r.pipeline()
            pipe.hdel(self.keys.monitors(), service)
            pipe.delete(self.keys.monitor_tick(service))
            removed, _ = pipe.execute()
        except redis.RedisError as exc:
            raise StoreError(f"cannot remove the monitor of {service}: {exc}") from exc
        return bool(removed)

    def claim_monitor_tick(self, service: str, interval_s: float) -> float | None:
        """Atomically take the monitor's next tick if it is due (Redis time); None when not.

        Exactly one caller gets each tick, however many beats or workers ask at once.
        """
        ttl = int(2 * interval_s) + 60
        try:
            got = self._claim_tick(keys=[self.keys.monitor_tick(service)], args=[interval_s, ttl])
        except redis.RedisError as exc:
            raise StoreError(f"cannot claim the tick of {service}: {exc}") from exc
        return float(got) if got is not None else None
