"""The loop-lag watchdog: notices when something blocks the event loop, and names the job.

A thread (not the loop: a blocked loop cannot report on itself) posts a no-op callback to the
loop and measures how long it takes to run. When that exceeds the threshold, the job whose
coroutine holds the loop (the loop's current task) is logged once per blocking episode. The
latest lag is kept for the metrics (`lag_seconds`).

It probes every `interval` while jobs are in flight. While none is, it looks every
`idle_interval` whether one has come, and probes the loop only every `idle_probe_interval`
(which keeps the lag figure fresh): each wake-up of a thread that slept costs a worker
something, and at ten probes a second those had been most of an idle worker's CPU time. The
outcome of a probe is read at the next wake-up (the loop only notes the time it ran it, which
wakes nobody); a block is reported at the first wake-up after it has lasted `threshold`. A job
handed to an idle loop is not announced to the watchdog (that would cost a thread wake-up on
the path that starts it), so a block that begins with a burst is seen up to `idle_interval`
later.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger()

JobLookup = Callable[["asyncio.Task[object] | None"], "dict[str, object] | None"]


@dataclass(slots=True)
class _Probe:
    """A no-op callback posted to the loop, and when the loop ran it."""

    posted: float
    answered_at: float | None = None
    job: dict[str, object] | None = None  # once reported blocked: the job that held the loop

    def answer(self) -> None:  # runs on the loop
        self.answered_at = time.monotonic()


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
        idle_probe_interval: float = 10.0,
    ) -> None:
        super().__init__(name="coroq-loop-watchdog", daemon=True)
        self._loop = loop
        self._describe_task = describe_task
        self._threshold = threshold
        self._busy = busy
        self._interval = interval
        self._idle_interval = idle_interval
        self._idle_probe_interval = idle_probe_interval
        self._finished = threading.Event()
        self.lag_seconds = 0.0

    def run(self) -> None:
        # Each wake-up reads how the probe posted at an earlier one fared, then posts the
        # next: the loop only notes the time it ran the probe, so answering wakes nobody.
        probe: _Probe | None = None
        last_posted = float("-inf")
        busy = self._busy()
        while not self._finished.wait(self._interval if busy else self._idle_interval):
            busy = self._busy()
            if probe is not None:
                if probe.answered_at is None:
                    self._still_waiting(probe)
                    continue
                self._answered(probe, probe.answered_at)
                probe = None
            if not busy and time.monotonic() - last_posted < self._idle_probe_interval:
                continue  # idle: only look for work; the loop is probed seldom
            probe = _Probe(time.monotonic())
            last_posted = probe.posted
            try:
                self._loop.call_soon_threadsafe(probe.answer)
            except RuntimeError:  # the loop is closed: the worker is stopping
                return

    def _still_waiting(self, probe: _Probe) -> None:
        waited = time.monotonic() - probe.posted
        self.lag_seconds = waited
        if probe.job is not None or waited < self._threshold:
            return
        probe.job = self._describe_task(asyncio.current_task(self._loop)) or {}
        log.warning(
            "loop.blocked",
            blocked_ms=round(waited * 1000, 1),
            threshold_ms=round(self._threshold * 1000, 1),
            hint="a coroutine is running blocking code (time.sleep, blocking I/O, heavy CPU); "
            "make it async or a plain def task",
            **probe.job,
        )

    def _answered(self, probe: _Probe, answered_at: float) -> None:
        lag = answered_at - probe.posted
        self.lag_seconds = lag
        if probe.job is not None:  # it was reported blocked
            log.info("loop.unblocked", blocked_ms=round(lag * 1000, 1), **probe.job)

    def stop(self) -> None:
        self._finished.set()
        if self.is_alive():
            self.join(self._threshold + 1)
