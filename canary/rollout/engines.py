"""The judge sessions a control process keeps in memory between tasks, fenced by an etag.

Opening the judge on its saved state (read it, parse the JSON, rebuild the ledger) was about
40% of an interim check and grew with the state (scripts/bench-scale). A process now keeps:

- per rollout, the session its last step end saved, under the etag of that save (the fence
  of the task that wrote it): the next analysis uses it when the saved etag is still that one,
  else reads the state from Redis, which stays the truth (a crash loses only this copy);
- per running window, the session its interim checks look with: opened once on the window's
  starting state, then fed only the look-ahead results pushed since the last check, so a
  check costs what came since, not the state's size nor everything the step pushed so far.
  It is separate from the step end's, which judges the batch records, not the pushes.

Both are bounded (least recently used go first) and dropped once their window or rollout is
done with. A copy is used by one task at a time: an analysis takes its session out, and a
window's checks take turns in its slot.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from canary.analysis.decision import JudgeSession

# Sessions kept per process: one per running rollout, and one per window being checked.
KEPT = 512


@dataclass
class CheckSession:
    """A window's interim-check session: the etag it was opened on and the pushes it has seen."""

    etag: str
    session: JudgeSession
    seen: int = 0


@dataclass
class CheckSlot:
    """Where a window's checks keep their session; ``done``: forget it (the window is over)."""

    entry: CheckSession | None = None
    done: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class Sessions:
    """The process's kept sessions (module docstring); safe to share between task threads."""

    def __init__(self, kept: int = KEPT) -> None:
        self._kept = kept
        self._lock = threading.Lock()
        self._steps: OrderedDict[str, tuple[str, JudgeSession]] = OrderedDict()
        self._checks: OrderedDict[tuple[str, str], CheckSlot] = OrderedDict()

    # --- step ends --------------------------------------------------------------------------

    def take(self, rollout_id: str) -> tuple[str, JudgeSession] | None:
        """The session the rollout's last step end saved and its etag, removed: the caller
        changes it, and puts it back with ``keep`` only once the save holding it succeeded."""
        with self._lock:
            return self._steps.pop(rollout_id, None)

    def keep(self, rollout_id: str, etag: str, session: JudgeSession) -> None:
        with self._lock:
            self._steps[rollout_id] = (etag, session)
            self._steps.move_to_end(rollout_id)
            while len(self._steps) > self._kept:
                self._steps.popitem(last=False)

    # --- interim checks ---------------------------------------------------------------------

    @contextmanager
    def checking(self, rollout_id: str, window: str) -> Iterator[CheckSlot]:
        """The window's slot, held by this check alone until the block ends.

        A look that cannot have it within a few seconds (another stalled in it) gets a slot of
        its own, not kept, rather than waiting on.
        """
        key = (rollout_id, window)
        with self._lock:
            slot = self._checks.setdefault(key, CheckSlot())
            self._checks.move_to_end(key)
            while len(self._checks) > self._kept:
                self._checks.popitem(last=False)
        if not slot.lock.acquire(timeout=5.0):
            yield CheckSlot()
            return
        try:
            yield slot
        finally:
            slot.lock.release()
            if slot.done:
                self.drop_check(rollout_id, window, slot)

    def drop_check(self, rollout_id: str, window: str, slot: CheckSlot | None = None) -> None:
        """Forget the window's check session (only ``slot``, when given)."""
        with self._lock:
            if slot is None or self._checks.get((rollout_id, window)) is slot:
                self._checks.pop((rollout_id, window), None)

    def forget(self, rollout_id: str) -> None:
        """Drop everything kept for a rollout (it ended)."""
        with self._lock:
            self._steps.pop(rollout_id, None)
            for key in [k for k in self._checks if k[0] == rollout_id]:
                del self._checks[key]


SESSIONS = Sessions()
