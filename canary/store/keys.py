"""The only place Redis key names are built: one prefix, one schema version, one function per key."""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA = "v1"


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under ``{prefix}:{SCHEMA}``; every key that grows has a cap or a TTL in the store."""

    prefix: str = "canary"

    @property
    def root(self) -> str:
        return f"{self.prefix}:{SCHEMA}"

    def rollouts(self) -> str:
        """Sorted set of rollout ids, scored by creation time (capped)."""
        return f"{self.root}:rollouts"

    def rollout(self, rollout_id: str) -> str:
        """The rollout record (JSON)."""
        return f"{self.root}:rollout:{rollout_id}"

    def events(self, rollout_id: str) -> str:
        """Stream of everything that happened to a rollout (MAXLEN-capped)."""
        return f"{self.root}:rollout:{rollout_id}:events"

    def engine(self, rollout_id: str) -> str:
        """The judge's state between tasks (JSON; the sequential engine's evidence)."""
        return f"{self.root}:rollout:{rollout_id}:engine"

    def engine_etag(self, rollout_id: str) -> str:
        """Which save wrote the judge's state (its fencing token): what a kept copy is checked by."""
        return f"{self.root}:rollout:{rollout_id}:engine-etag"

    def saved_fence(self, rollout_id: str) -> str:
        """The fencing token of the last accepted save of the record (see Store.save_record)."""
        return f"{self.root}:rollout:{rollout_id}:saved-fence"

    def answers(self, rollout_id: str) -> str:
        """Hash command id → what became of an operator command (expires with the rollout)."""
        return f"{self.root}:rollout:{rollout_id}:answers"

    def service_rollout(self, service: str) -> str:
        """The id of the unfinished rollout steering a service (one at a time)."""
        return f"{self.root}:service:{service}:rollout"

    def lock(self, rollout_id: str) -> str:
        """The coordinator lock of a rollout (holds the fencing token)."""
        return f"{self.root}:rollout:{rollout_id}:lock"

    def fence(self, rollout_id: str) -> str:
        """Monotonic counter issuing fencing tokens."""
        return f"{self.root}:rollout:{rollout_id}:fence"

    def results(self, rollout_id: str, window: str) -> str:
        """Results of one probing window (a step attempt), as JSON list entries."""
        return f"{self.root}:rollout:{rollout_id}:results:{window}"

    def batches(self, rollout_id: str, window: str) -> str:
        """Ids of the batches already recorded for a window (what makes recording idempotent)."""
        return f"{self.root}:rollout:{rollout_id}:batches:{window}"

    def windows(self, rollout_id: str) -> str:
        """Ordered list of the window names a rollout probed (for export and history)."""
        return f"{self.root}:rollout:{rollout_id}:windows"

    def history(self, service: str, transaction: str) -> str:
        """Capped rolling history of a service's stable results for one transaction."""
        return f"{self.root}:history:{service}:{transaction}"

    def control(self, rollout_id: str) -> str:
        """Operator commands waiting for the coordinator (pause, resume, promote, abort)."""
        return f"{self.root}:rollout:{rollout_id}:control"

    def expected(self, rollout_id: str, window: str) -> str:
        """Hash batch id → probe runs the coordinator dispatched for a window (for accounting)."""
        return f"{self.root}:rollout:{rollout_id}:expected:{window}"

    def batch_meta(self, rollout_id: str, window: str) -> str:
        """Hash batch id → JSON of where and when a recorded batch ran (host, environment, runs)."""
        return f"{self.root}:rollout:{rollout_id}:batchmeta:{window}"

    def sealed(self, rollout_id: str, window: str) -> str:
        """Set once a window was judged: batches recorded later are refused, not counted."""
        return f"{self.root}:rollout:{rollout_id}:sealed:{window}"

    def verdict(self, rollout_id: str, window: str) -> str:
        """The decision a window was judged with (JSON), written once with its event and history."""
        return f"{self.root}:rollout:{rollout_id}:verdict:{window}"

    def missing(self, rollout_id: str, window: str) -> str:
        """Ids of the batches a judged window went without (accounted as missing data)."""
        return f"{self.root}:rollout:{rollout_id}:missing:{window}"

    def interim(self, rollout_id: str, window: str) -> str:
        """Hash result id → JSON of results pushed while a window runs (look-ahead; expires)."""
        return f"{self.root}:rollout:{rollout_id}:interim:{window}"

    def interim_log(self, rollout_id: str, window: str) -> str:
        """List of the look-ahead results in the order they were first pushed (checks read on)."""
        return f"{self.root}:rollout:{rollout_id}:interim-log:{window}"

    def lookahead(self, rollout_id: str, window: str) -> str:
        """How many look-ahead results an interim rollback kept with a window's results."""
        return f"{self.root}:rollout:{rollout_id}:lookahead:{window}"

    def claim(self, rollout_id: str, window: str, batch_id: str) -> str:
        """Who is running a batch now; kept alive by a heartbeat, so it expires with its worker."""
        return f"{self.root}:rollout:{rollout_id}:claim:{window}:{batch_id}"

    def monitors(self) -> str:
        """Hash service → JSON of its continuous stable monitor (capped in the store)."""
        return f"{self.root}:monitors"

    def monitor_tick(self, service: str) -> str:
        """When a service's monitor last ticked (Redis time; expires when no longer ticking)."""
        return f"{self.root}:monitor:{service}:tick"
