"""How long the store keeps what it writes: CANARY_RESULTS_TTL, read once per store."""

from __future__ import annotations

import os

from canary.errors import ConfigError

# Probe results are what fills Redis (docs/operations.md, Sizing): a month by default.
DEFAULT_RESULTS_TTL_S = 30 * 24 * 3600
# Below a day a rollout's own results could expire while it still runs or is reported on.
MIN_RESULTS_TTL_S = 24 * 3600
# A finished rollout's record, events and windows are kept at least this long (and as long as
# its results, so that a kept result is never one without its rollout).
FINISHED_TTL_S = 30 * 24 * 3600


def results_ttl_s() -> int:
    """CANARY_RESULTS_TTL: seconds a window's results (and its batches' accounting) are kept.

    Accepts seconds, or a number followed by ``d`` (days) or ``h`` (hours): ``7d``. Anything
    else, or less than a day, is a ConfigError naming the variable.
    """
    raw = (os.environ.get("CANARY_RESULTS_TTL") or "").strip()
    if not raw:
        return DEFAULT_RESULTS_TTL_S
    unit = {"d": 86400, "h": 3600, "s": 1}.get(raw[-1].lower())
    number = raw[:-1] if unit else raw
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        seconds = float("nan")
    if not seconds >= MIN_RESULTS_TTL_S or seconds == float("inf"):
        raise ConfigError(
            f"CANARY_RESULTS_TTL: {raw!r} is not a retention of a day or more "
            "(seconds, or e.g. 7d, 36h)"
        )
    return int(seconds)


def finished_ttl_s(results_ttl: int) -> int:
    """How long a finished rollout's record and what hangs off it are kept."""
    return max(FINISHED_TTL_S, results_ttl)
