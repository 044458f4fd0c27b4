"""scripts/bench-scale runs end to end (its smallest mode) and its summary parses.

A benchmark, not a timed test: nothing here compares a figure with a target.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


# A whole fleet, targets and a headless browser for the PNG: generous on a busy machine.
@pytest.mark.timeout(660)
def test_the_bench_runs_and_its_last_line_is_the_summary(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            *(sys.executable, str(ROOT / "scripts" / "bench-scale"), "--tiny", "--json"),
            # The one scale row is probed by the results injector, so that it runs here too
            # (the hard failure and operator parts probe for real).
            *("--rollouts", "1", "--inject-from", "1", "--trials", "1", "--workdir", str(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert set(summary) == {"act_p95_s", "abort_p95_s", "rollouts_at_1s_lag", "probe_scaling"}
    for key in ("act_p95_s", "abort_p95_s", "probe_scaling"):
        # null only when every trial of that part was refused (the bench says why on stderr)
        value = summary[key]
        assert value is None or (isinstance(value, float) and math.isfinite(value)), summary
    assert summary["rollouts_at_1s_lag"] in (0, 1)
    # Every figure is printed beside its target, and the curves were drawn.
    assert any(line.startswith("hard failure → router, p95") for line in lines)
    assert any(line.startswith("targets met:") for line in lines)
    # Rows measured with the injector say so.
    assert any(line.startswith("N=1 injected: check lag p95") for line in lines)
    assert any("first failure → decision / → router" in line for line in lines)
    assert (tmp_path / "scale.svg").exists()
