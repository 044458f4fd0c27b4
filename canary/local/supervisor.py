"""The background supervisor behind `canary local up`: runs the fleet and Flower until SIGTERM."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from canary.local.fleet import LocalFleet
from canary.local.flower import start_flower
from canary.local.state import remove_state, write_state
from canary.settings import load_settings


def serve(workdir: Path, environments: str) -> int:
    """Run the fleet until SIGTERM or SIGINT, then stop all of it."""
    prefix = load_settings().probe_queue_prefix
    queues = [f"{prefix}.{env.strip()}" for env in environments.split(",") if env.strip()]
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    fleet = LocalFleet(workdir, probe_queues=queues, probe_concurrency=64, beat=True)
    fleet.start()
    flower = None
    try:
        flower, flower_url, password = start_flower(workdir, fleet.redis_url)
        write_state(
            workdir,
            {
                "pid": os.getpid(),
                "redis_url": fleet.redis_url,
                "flower_url": flower_url,
                "flower_user": "canary",
                "flower_password": password,
                "queues": [load_settings().control_queue, *queues],
                "log_dir": str(fleet.log_dir),
                "started_at": time.time(),
            },
        )
        while not stop:
            time.sleep(0.5)
    finally:
        remove_state(workdir)
        if flower is not None:
            flower.stop()
        fleet.stop()
    return 0


if __name__ == "__main__":
    sys.exit(serve(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "default"))
