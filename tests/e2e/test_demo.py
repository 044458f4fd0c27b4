"""`canary demo` (what ./scripts/demo runs) ends as designed, shows traffic going back, leaves nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.fixtures.processes import left_under


def test_demo_promotes_one_and_rolls_back_the_other(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CANARY_REDIS_URL"}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "canary.cli.main",
            "demo",
            "--interval",
            "3",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "PROMOTED" in r.stdout and "ROLLED BACK" in r.stdout
    assert "demo summary" in r.stdout
    # The dashboard is announced with its log-in, and the bad canary was caught after its
    # users had moved to it: they are seen going back to stable.
    assert re.search(
        r"Watch both rollouts live: http://127\.0\.0\.1:\d+/ +\(user canary, password \S+\)",
        r.stdout,
    )
    caught = re.search(r"the saturating one slowed down at (\d+)% of the traffic", r.stdout)
    assert caught and int(caught.group(1)) > 0, r.stdout[-3000:]
    assert "[saturating]   users: 0% served by the canary, 100% by stable (all back" in r.stdout
    assert left_under(tmp_path) == [], "processes left running after the demo"
