"""Traffic to stable without Redis: the route a `canary run` holds, and the last will its
watchdog runs when the run dies (kill -9, a crash) before its rollout ended."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

WILL_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class StableRoute:
    """What sending a rollout's traffic to stable takes: its router block and versions."""

    rollout_id: str
    service: str
    router: dict[str, Any]
    stable: dict[str, Any]
    canary: dict[str, Any]

    @classmethod
    def of(cls, config: Any, rollout_id: str) -> StableRoute:
        """From a RolloutConfig (typed Any: the config module imports much we need not)."""
        cfg = config.model_dump(mode="json")
        return cls(rollout_id, config.service_name, cfg["router"], cfg["stable"], cfg["canary"])

    def send(self, step: int = 0) -> str | None:
        """Roll back through the router; None when done, else why it could not."""
        from canary.routers import RouteContext, build_router

        spec = dict(self.router)
        try:
            router = build_router(str(spec.pop("type")), spec)
            router.rollback(
                RouteContext(
                    rollout_id=self.rollout_id,
                    service=self.service,
                    stable=self.stable,
                    canary=self.canary,
                    step=step,
                )
            )
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return None


def write_will(path: Path, route: StableRoute) -> list[str]:
    """Write ``route`` to ``path`` (0600: router blocks may hold secrets); the command that
    carries it out, for procs.set_last_will."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    path.write_text(json.dumps(asdict(route)))
    return [sys.executable, "-m", "canary.local.lastwill", str(path)]


def carry_out(path: Path) -> int:
    """Send the route in ``path`` to stable; the outcome goes to a ``.log`` beside it."""
    route = StableRoute(**json.loads(path.read_text()))
    failed = route.send()
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    outcome = f"COULD NOT send traffic to stable: {failed}" if failed else "traffic sent to stable"
    with open(path.with_suffix(".log"), "a") as log:
        log.write(f"{when} canary run died before rollout {route.rollout_id} ended: {outcome}\n")
    path.unlink(missing_ok=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(carry_out(Path(sys.argv[1])))
