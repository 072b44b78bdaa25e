"""The worker's concurrency cap, as leases.

A `Lease` is one slot, taken before a job leaves Redis and released exactly once by whoever
ends the job's life on this worker: the registry of running jobs when its coroutine is done,
or the consumer when the job never reaches the loop (bad input, not held any more, a stop).
Releasing a lease a second time does nothing, so no path can give back more slots than it
took; `Slots.in_use` lets tests check that every lease came back. `lease_all` takes every slot
for one consumer, which then runs suspects with nothing beside them (docs/reliability.md#blame).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

# How often `lease_all` checks whether the worker is stopping while it waits.
WAIT_STEP = 0.25


class Slots:
    """`capacity` slots, shared by the consumer threads of one worker."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._semaphore = threading.BoundedSemaphore(capacity)
        # Cleared while one consumer gathers every slot: the others take none meanwhile, so
        # that the jobs running now finish and nothing new starts beside what comes next.
        self._open = threading.Event()
        self._open.set()
        self._gathering = threading.Lock()
        # Called once the gate is shut: consumers blocked in a pop hold a slot each until it
        # ends, so they are woken to give it back now rather than at the pop's timeout.
        self.on_gather: Callable[[], None] = lambda: None

    def lease(self, timeout: float) -> Lease | None:
        """A slot, waiting up to `timeout` seconds for one to be free; None if none was."""
        if not self._open.is_set():
            self._open.wait(timeout)
            return None
        if not self._semaphore.acquire(timeout=timeout):
            return None
        return Lease(self)

    def lease_all(self, stop: threading.Event) -> list[Lease] | None:
        """Every slot, waiting for the jobs that hold some to end, while no other consumer
        takes any; None once `stop` is set (nothing held then)."""
        while not self._gathering.acquire(timeout=WAIT_STEP):
            if stop.is_set():
                return None
        taken = 0
        self._open.clear()
        self.on_gather()
        try:
            while taken < self.capacity:
                if stop.is_set():
                    if taken:
                        self._semaphore.release(taken)
                    return None
                if self._semaphore.acquire(timeout=WAIT_STEP):
                    taken += 1
            return [Lease(self) for _ in range(taken)]
        finally:
            self._open.set()
            self._gathering.release()

    def spare(self, most: int) -> list[Lease]:
        """Up to `most` more slots: those free now."""
        if not self._open.is_set():
            return []
        taken = 0
        while taken < most and self._semaphore.acquire(blocking=False):
            taken += 1
        return [Lease(self) for _ in range(taken)]

    def release_unused(self, leases: list[Lease]) -> None:
        """Give back leases that were never used, with one call to the semaphore."""
        count = sum(1 for lease in leases if lease.end())
        if count:
            self._semaphore.release(count)

    @property
    def in_use(self) -> int:
        """Slots leased and not released (a reading for tests and metrics)."""
        return self.capacity - self._semaphore._value  # the semaphore's own count

    def _give_back(self) -> None:
        self._semaphore.release()


class Lease:
    """One slot of `Slots`, held from before a job's pop until the end of its life here."""

    __slots__ = ("_lock", "_slots")

    def __init__(self, slots: Slots) -> None:
        self._slots: Slots | None = slots
        self._lock = threading.Lock()

    def release(self) -> None:
        """Give the slot back; later calls do nothing."""
        with self._lock:
            slots, self._slots = self._slots, None
        if slots is not None:
            slots._give_back()

    def end(self) -> bool:
        """End the lease without giving the slot back (its owner does, for many leases at
        once); True the first time only."""
        with self._lock:
            ended, self._slots = self._slots is not None, None
        return ended

    @property
    def held(self) -> bool:
        return self._slots is not None
