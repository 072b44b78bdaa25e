"""How big the fault runs are: the short form by default, `COROQ_FAULTS_SCALE=N` for N times.

The short form (what CI runs) already meets the minimums (≥ 5,000 jobs and ≥ 10 kills in
the SIGKILL chaos test); the scale multiplies jobs, kills, faults and rounds, and the
per-test timeouts with them.
"""

from __future__ import annotations

import os

SCALE_ENV = "COROQ_FAULTS_SCALE"


def _read_scale() -> int:
    raw = os.environ.get(SCALE_ENV, "1").strip() or "1"
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{SCALE_ENV} must be a whole number ≥ 1, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"{SCALE_ENV} must be a whole number ≥ 1, got {raw!r}")
    return value


SCALE = _read_scale()


def scaled(count: int) -> int:
    return count * SCALE


def timeout_for(seconds: float) -> float:
    """A per-test timeout (pytest-timeout) that grows with the scale."""
    return seconds * SCALE
