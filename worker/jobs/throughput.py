"""Counting the jobs that end on this worker, per queue and minute, for each queue's
throughput history in Redis (producer/history.py).

The runner counts a job that succeeded or ended dead on the event loop; a consumer thread
counts the bad input it dead-letters. Each count is a dict increment under a lock (the
heartbeat thread takes the counts from another thread), so the job path pays no Redis command
for it. The heartbeat thread sends what was counted with its next beat
(`worker.process.history_writer`) and gives back what it could not send, to be sent next time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from producer.history import FAILED, MINUTES_KEPT, OK, Outcome, minute_of

# (queue, unix minute, outcome) -> jobs
Counts = dict[tuple[str, int, Outcome], int]


class ThroughputCounter:
    """Jobs that succeeded and jobs that ended dead, per queue and minute, not sent yet."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: Counts = {}
        self._minute = 0  # the latest minute counted in

    def succeeded(self, queue: str) -> None:
        self._count(queue, OK)

    def failed(self, queue: str) -> None:
        """A job of `queue` ended dead: dead-lettered, failed for good."""
        self._count(queue, FAILED)

    def _count(self, queue: str, outcome: Outcome) -> None:
        minute = minute_of(self._clock())
        key = (queue, minute, outcome)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
            if minute != self._minute:
                # Once a minute: counts Redis would no longer keep go, so a long outage
                # cannot make them pile up.
                self._minute = minute
                self._forget_before(minute - MINUTES_KEPT + 1)

    def take(self) -> Counts:
        """Every count not sent yet; the counter starts again from nothing."""
        with self._lock:
            counts, self._counts = self._counts, {}
        return counts

    def give_back(self, counts: Mapping[tuple[str, int, Outcome], int]) -> None:
        """Counts taken but not sent (Redis failed): they go with the next `take`."""
        with self._lock:
            for key, count in counts.items():
                self._counts[key] = self._counts.get(key, 0) + count

    def _forget_before(self, oldest: int) -> None:
        for key in [key for key in self._counts if key[1] < oldest]:
            del self._counts[key]
