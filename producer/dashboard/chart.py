"""The throughput chart: jobs finished and failed per minute, drawn as SVG on the server (no
script library, nothing to fetch; it reads the same without JavaScript)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from producer.history import MinuteCounts

WIDTH = 600
HEIGHT = 120
GAP = 1.0  # between bars


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    width: float
    ok_y: float
    ok_height: float
    failed_y: float
    failed_height: float
    label: str  # the tooltip: minute and counts


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    peak: int  # jobs in the busiest minute: the top of the scale
    finished: int
    failed: int


def draw(history: Sequence[MinuteCounts]) -> Chart:
    """Stacked bars, one per minute: finished at the bottom, failed on top."""
    peak = max((minute.ok + minute.failed for minute in history), default=0)
    scale = HEIGHT / peak if peak else 0.0
    step = WIDTH / max(len(history), 1)
    bars = []
    for index, minute in enumerate(history):
        ok_height = minute.ok * scale
        failed_height = minute.failed * scale
        at = time.strftime("%H:%M", time.localtime(minute.minute_start))
        bars.append(
            Bar(
                x=round(index * step, 2),
                width=round(max(step - GAP, 0.5), 2),
                ok_y=round(HEIGHT - ok_height, 2),
                ok_height=round(ok_height, 2),
                failed_y=round(HEIGHT - ok_height - failed_height, 2),
                failed_height=round(failed_height, 2),
                label=f"{at}: {minute.ok} finished, {minute.failed} failed",
            )
        )
    return Chart(
        WIDTH,
        HEIGHT,
        tuple(bars),
        peak,
        finished=sum(minute.ok for minute in history),
        failed=sum(minute.failed for minute in history),
    )
