"""The loop-lag watchdog: notices when something blocks the event loop, and names the job.

A thread (not the loop: a blocked loop cannot report on itself) posts a no-op callback to the
loop and measures how long it takes to run. When that exceeds the threshold, the job whose
coroutine holds the loop (the loop's current task) is logged once per blocking episode. The
latest lag is kept for the metrics (`lag_seconds`).

It probes every `interval` while jobs are in flight and every `idle_interval` while none is:
each probe wakes two threads, which was most of an idle worker's CPU time at the busy pace.
A job handed to an idle loop is not announced to the watchdog: that would cost a thread
wake-up on the path that starts it. So a block that begins as a burst begins is reported
once it has lasted `threshold` plus up to `idle_interval`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import structlog

log = structlog.get_logger()

JobLookup = Callable[["asyncio.Task[object] | None"], "dict[str, object] | None"]


class LoopWatchdog(threading.Thread):
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        describe_task: JobLookup,
        *,
        threshold: float,
        busy: Callable[[], bool],
        interval: float = 0.1,
        idle_interval: float = 1.0,
    ) -> None:
        super().__init__(name="coroq-loop-watchdog", daemon=True)
        self._loop = loop
        self._describe_task = describe_task
        self._threshold = threshold
        self._busy = busy
        self._interval = interval
        self._idle_interval = idle_interval
        self._finished = threading.Event()
        self.lag_seconds = 0.0

    def run(self) -> None:
        while not self._finished.wait(self._interval if self._busy() else self._idle_interval):
            answered = threading.Event()
            posted = time.monotonic()
            try:
                self._loop.call_soon_threadsafe(answered.set)
            except RuntimeError:  # the loop is closed: the worker is stopping
                return
            if answered.wait(self._threshold):
                self.lag_seconds = time.monotonic() - posted
                continue
            self._report_blocked(answered, posted)

    def _report_blocked(self, answered: threading.Event, posted: float) -> None:
        job = self._describe_task(asyncio.current_task(self._loop))
        log.warning(
            "loop.blocked",
            blocked_ms=round((time.monotonic() - posted) * 1000, 1),
            threshold_ms=round(self._threshold * 1000, 1),
            hint="a coroutine is running blocking code (time.sleep, blocking I/O, heavy CPU); "
            "make it async or a plain def task",
            **(job or {}),
        )
        while not answered.wait(self._interval):
            self.lag_seconds = time.monotonic() - posted
            if self._finished.is_set():
                return
        lag = time.monotonic() - posted
        self.lag_seconds = lag
        log.info("loop.unblocked", blocked_ms=round(lag * 1000, 1), **(job or {}))

    def stop(self) -> None:
        self._finished.set()
        if self.is_alive():
            self.join(self._threshold + 1)
