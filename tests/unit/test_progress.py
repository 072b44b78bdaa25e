"""`ProgressReporter`: a task may report progress as often as it likes; the record is written
at most once per MIN_INTERVAL with the latest values, from the coroutine or a thread."""

from __future__ import annotations

import asyncio
import math
import threading
import time

import pytest

from worker.context import JobInfo
from worker.jobs.progress import MIN_INTERVAL, ProgressReporter, checked_fraction


class Writes:
    def __init__(self) -> None:
        self.values: list[tuple[float, str]] = []
        self.written = asyncio.Event()

    async def __call__(self, fraction: float, note: str, at: float) -> bool:
        self.values.append((fraction, note))
        self.written.set()
        return True

    async def until(self, last: tuple[float, str]) -> None:
        """Wait (10 s at most) until `last` is the latest value written."""
        async with asyncio.timeout(10):
            while not self.values or self.values[-1] != last:
                self.written.clear()
                await self.written.wait()


def test_a_tight_loop_is_written_a_few_times_and_the_latest_value_last() -> None:
    async def scenario() -> tuple[list[tuple[float, str]], float]:
        writes = Writes()
        reporter = ProgressReporter(asyncio.get_running_loop(), writes)
        began = time.monotonic()
        for step in range(1, 10_001):
            reporter.report(step / 10_000, f"{step}")
        elapsed = time.monotonic() - began
        await writes.until((1.0, "10000"))
        reporter.stop()
        return writes.values, elapsed

    values, elapsed = asyncio.run(scenario())
    assert values[-1] == (1.0, "10000")
    assert len(values) <= 2 + math.ceil(elapsed / MIN_INTERVAL)


def test_reports_from_a_thread_reach_the_loop() -> None:
    async def scenario() -> list[tuple[float, str]]:
        writes = Writes()
        reporter = ProgressReporter(asyncio.get_running_loop(), writes)
        thread = threading.Thread(target=reporter.report, args=(0.5, "half"))
        thread.start()
        await asyncio.to_thread(thread.join)
        await writes.until((0.5, "half"))
        reporter.stop()
        return writes.values

    assert asyncio.run(scenario()) == [(0.5, "half")]


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan, "half", True, None])
def test_a_fraction_outside_0_to_1_is_refused_naming_it(bad: object) -> None:
    with pytest.raises((ValueError, TypeError), match="progress must be"):
        checked_fraction(bad)  # type: ignore[arg-type]


def test_progress_outside_a_worker_says_so() -> None:
    with pytest.raises(RuntimeError, match="only by a task a worker runs"):
        JobInfo("id", "task", "q", 1, 3).progress(0.5)
