"""Local mode: every process canary starts on this machine (Redis, workers, Flower, proxies, demo)."""

from canary.local.fleet import LocalFleet
from canary.local.procs import ManagedProcess, free_port, stop_all
from canary.local.redis import redis_server_binary, start_redis

__all__ = [
    "LocalFleet",
    "ManagedProcess",
    "free_port",
    "redis_server_binary",
    "start_redis",
    "stop_all",
]
