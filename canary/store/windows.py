"""The store's window part: probe batches and their results, batch claims, look-ahead results."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from canary.probing.result import TransactionResult
from canary.store.base import StoreBase, mapped, parse_results
from canary.store.retention import DEFAULT_RESULTS_TTL_S

# The default; a store keeps results ``results_ttl_s`` (CANARY_RESULTS_TTL, canary.store.retention).
RESULTS_TTL_S = DEFAULT_RESULTS_TTL_S
# The look-ahead copy only serves the interim checks of a running window; the batch record stays
# the truth, so a day is plenty; once its window is sealed it is deleted (nothing reads it then),
# so a rollout keeps one window's look-ahead however many steps it runs.
INTERIM_TTL_S = 24 * 3600


class WindowStore(StoreBase):
    """Windows of a rollout: which batches were expected, recorded, missing, and their results.

    Recording a batch is atomic and idempotent: a Lua script adds the batch id to the window's
    set and appends the results only when the id was new, so a batch re-delivered after its
    worker died is never counted twice.
    """

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
        with mapped(f"cannot record batch {batch_id}"):
            status = self.scripts["record_batch"](
                keys=[
                    self.keys.batches(rollout_id, window),
                    self.keys.results(rollout_id, window),
                    self.keys.sealed(rollout_id, window),
                    self.keys.batch_meta(rollout_id, window),
                ],
                args=[batch_id, self.results_ttl_s, json.dumps(meta) if meta else "", *payload],
            )
        return int(status)

    def set_expected(self, rollout_id: str, window: str, runs: dict[str, int]) -> None:
        """Remember which batches a window was dispatched with, and how many runs each carries."""
        if not runs:
            return
        key = self.keys.expected(rollout_id, window)
        with mapped(f"cannot save the batches of {window}"):
            pipe = self.r.pipeline()
            pipe.hset(key, mapping=runs)
            pipe.expire(key, self.results_ttl_s)
            pipe.execute()

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
        with mapped(f"cannot seal {window} of {rollout_id}"):
            got = self.scripts["seal_window"](keys=keys, args=[self.results_ttl_s, *expected])
            # The look-ahead only serves checks of a running window (and, just above, the
            # results of an interim rollback): once sealed nothing adds to it or reads it.
            self.r.delete(
                self.keys.interim(rollout_id, window), self.keys.interim_log(rollout_id, window)
            )
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
        with mapped(f"cannot push interim results of {window}"):
            got = self.scripts["record_interim"](
                keys=[
                    self.keys.interim(rollout_id, window),
                    self.keys.sealed(rollout_id, window),
                    self.keys.interim_log(rollout_id, window),
                ],
                args=args,
            )
        return int(got)

    def interim_results(self, rollout_id: str, window: str) -> list[TransactionResult]:
        """The look-ahead results pushed so far for a window, in time order."""
        got = self.interim_since(rollout_id, window, 0)
        got.sort(key=lambda r: r.t)
        return got

    def interim_since(self, rollout_id: str, window: str, start: int) -> list[TransactionResult]:
        """The look-ahead results from position ``start`` of the window's log, as first pushed.

        A check that keeps what it read reads on from there: its cost is what came since its
        last look, not everything the step pushed so far.
        """
        with mapped(f"cannot read interim results of {window}"):
            raws = self.r.lrange(self.keys.interim_log(rollout_id, window), start, -1)
        return parse_results(raws)

    def is_sealed(self, rollout_id: str, window: str) -> bool:
        with mapped(f"cannot read {window} of {rollout_id}"):
            return bool(self.r.exists(self.keys.sealed(rollout_id, window)))

    def window_accounting(self, rollout_id: str, window: str) -> dict[str, Any]:
        """Expected, recorded and missing batches of a window, and the results it holds.

        ``results`` are the runs of the recorded batches plus ``lookahead``.
        """
        with mapped(f"cannot read the accounting of {window} of {rollout_id}"):
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
        with mapped(f"cannot claim batch {batch_id}"):
            return bool(self.r.set(key, owner, nx=True, px=int(ttl_s * 1000)))

    def refresh_claim(
        self, rollout_id: str, window: str, batch_id: str, owner: str, ttl_s: float
    ) -> bool:
        key = self.keys.claim(rollout_id, window, batch_id)
        with mapped(f"cannot refresh the claim of batch {batch_id}"):
            return bool(self.scripts["refresh_claim"](keys=[key], args=[owner, int(ttl_s * 1000)]))

    def refresh_claims(
        self, claims: Sequence[tuple[str, str, str, str]], ttl_s: float
    ) -> list[bool]:
        """``refresh_claim`` for many (rollout, window, batch, owner) in one round trip."""
        with mapped(f"cannot refresh {len(claims)} batch claims"):
            pipe = self.r.pipeline(transaction=False)
            for rollout_id, window, batch_id, owner in claims:
                key = self.keys.claim(rollout_id, window, batch_id)
                self.scripts["refresh_claim"](
                    keys=[key], args=[owner, int(ttl_s * 1000)], client=pipe
                )
            return [bool(x) for x in pipe.execute()]

    def release_claim(self, rollout_id: str, window: str, batch_id: str, owner: str) -> None:
        key = self.keys.claim(rollout_id, window, batch_id)
        with mapped(f"cannot release the claim of batch {batch_id}"):
            self.scripts["release_lock"](keys=[key], args=[owner])

    def recorded_batches(self, rollout_id: str, window: str) -> set[str]:
        with mapped(f"cannot read the batches of {window}"):
            return set(self.r.smembers(self.keys.batches(rollout_id, window)))

    def add_window(self, rollout_id: str, window: str) -> None:
        key = self.keys.windows(rollout_id)
        with mapped(f"cannot add {window} to rollout {rollout_id}"):
            if window not in self.r.lrange(key, 0, -1):
                self.r.rpush(key, window)

    def windows(self, rollout_id: str) -> list[str]:
        with mapped(f"cannot read the windows of {rollout_id}"):
            return list(self.r.lrange(self.keys.windows(rollout_id), 0, -1))

    def window_results(self, rollout_id: str, window: str) -> list[TransactionResult]:
        with mapped(f"cannot read the results of {window} of {rollout_id}"):
            raws = self.r.lrange(self.keys.results(rollout_id, window), 0, -1)
        return parse_results(raws)

    def all_results(self, rollout_id: str) -> list[TransactionResult]:
        out: list[TransactionResult] = []
        for w in self.windows(rollout_id):
            out.extend(self.window_results(rollout_id, w))
        out.sort(key=lambda r: r.t)
        return out
