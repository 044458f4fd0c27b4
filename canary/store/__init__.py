"""Redis persistence of rollouts, their events and probe results."""

from canary.store.keys import Keys
from canary.store.redis_store import Store, connect

__all__ = ["Keys", "Store", "connect"]
