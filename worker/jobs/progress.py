"""A running task's progress (docs/futures.md#progress): `current_job().progress(0.4, "4/10")`.

A task may report progress as often as it likes, from its coroutine or from the thread of a
`def` task; the record is written at most once every MIN_INTERVAL seconds per job, with the
latest values, so a tight loop cannot flood Redis. A report still waiting for its turn when
the attempt ends is dropped: the job's outcome says more. Progress is best effort: a report
Redis refuses or misses (an outage) is logged and the job goes on.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog

log = structlog.get_logger()

# Least time between two writes of one job's progress.
MIN_INTERVAL = 0.25
# Longest note kept (the record is not a log).
MAX_NOTE = 200

T = TypeVar("T")
# Writes (fraction, note, at) for the job; True when recorded.
WriteProgress = Callable[[float, str, float], Awaitable[bool]]
# The same, for the attempt given first.
WriteProgressOf = Callable[[T, float, str, float], Awaitable[bool]]


def checked_fraction(fraction: float) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise TypeError(f"progress must be a number from 0 to 1, not {fraction!r}")
    if math.isnan(fraction) or not 0 <= fraction <= 1:
        raise ValueError(f"progress must be from 0 to 1, not {fraction!r}")
    return float(fraction)


class ProgressHandle:
    """What `current_job().progress` calls: it makes the attempt's `ProgressReporter` on the
    first report only (most jobs report none), and lets go of everything once the attempt ends
    (the job's context holds it, and the context lives as long as the job's task)."""

    __slots__ = ("_attempt", "_loop", "_reporter", "_write")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, write: WriteProgressOf[T], attempt: T
    ) -> None:
        self._loop: asyncio.AbstractEventLoop | None = loop
        self._write: WriteProgressOf[Any] | None = write
        self._attempt: Any = attempt
        self._reporter: ProgressReporter | None = None

    def report(self, fraction: float, note: str = "") -> None:
        if self._reporter is None:
            if self._loop is None or self._write is None:
                raise RuntimeError("the attempt has ended: its progress can no longer change")
            write = functools.partial(self._write, self._attempt)
            self._reporter = ProgressReporter(self._loop, write)
        self._reporter.report(fraction, note)

    def close(self) -> None:
        """The attempt ended: stop writing, drop the references."""
        if self._reporter is not None:
            self._reporter.stop()
        self._loop = self._write = self._attempt = self._reporter = None


class ProgressReporter:
    """One attempt's progress, written by a task on the loop that runs the job."""

    def __init__(self, loop: asyncio.AbstractEventLoop, write: WriteProgress) -> None:
        self._loop = loop
        self._write = write
        self._latest: tuple[float, str] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._last_write = -math.inf

    def report(self, fraction: float, note: str = "") -> None:
        """From the job's coroutine or its thread: note the latest progress; it is written
        within MIN_INTERVAL."""
        value = (checked_fraction(fraction), str(note)[:MAX_NOTE])
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._note(value)
        else:
            self._loop.call_soon_threadsafe(self._note, value)

    def _note(self, value: tuple[float, str]) -> None:
        self._latest = value
        if self._writer is None:
            self._writer = self._loop.create_task(self._write_latest())

    async def _write_latest(self) -> None:
        try:
            while self._latest is not None:
                await asyncio.sleep(max(0.0, self._last_write + MIN_INTERVAL - time.monotonic()))
                (fraction, note), self._latest = self._latest, None
                self._last_write = time.monotonic()
                if await self._write(fraction, note, time.time()):
                    log.info("job.progress", progress=fraction, note=note)
        except Exception as exc:  # noqa: BLE001 - progress is best effort; the job goes on
            log.warning("job.progress_failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            self._writer = None

    def stop(self) -> None:
        """The attempt ended: nothing more is written."""
        self._latest = None
        if self._writer is not None:
            self._writer.cancel()
