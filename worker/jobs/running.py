"""The jobs this worker has handed to its event loop, until their coroutine is done.

The one registry of running jobs: the consumer adds a job before it submits it to the loop,
the runner binds the asyncio task that runs it, and the coroutine's completion
(`finish`, from its future's done-callback) ends the job's life here and releases its slot.
Shutdown waits on it and cancels through it; the loop-lag watchdog asks it which job a blocked
task runs.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from worker.errors import JobError
from worker.jobs.decode import ReceivedJob
from worker.jobs.slots import Lease


@dataclass(slots=True, eq=False)
class RunningJob:
    """One attempt of a job on this worker."""

    job: ReceivedJob
    lease: Lease
    attempt: int = 0  # counted in Redis by the runner before the handler is called
    forgiven: int = 0  # earlier attempts lost beside other jobs: not held against it
    used_up: bool = False  # not started: its attempts are used up (lost while alone)
    # The task that runs the job: the one that counts its start, then the job's own.
    task: asyncio.Task[Any] | None = None
    # Its own task has begun running it: before that, a cancel of the task would end the
    # coroutine before its first line, and nothing would record the job's outcome.
    began: bool = False
    # A producer asked for it to be cancelled (docs/futures.md#cancel).
    cancel_requested: bool = False
    # Shutdown cancelled it before its task began: the task puts it back as it begins.
    stop_requested: bool = False
    # How the attempt ended, once it did (succeeded, retried, dead, cancelled, requeued),
    # and the error of a failed one: for its span (worker/tracing).
    outcome: str = ""
    error: JobError | None = None

    @property
    def held_attempt(self) -> int:
        """The attempt number as `max_attempts` counts it: lost attempts forgiven."""
        return self.attempt - self.forgiven


# Called on the loop once a job's task is done, its cleanup included.
JobDone = Callable[[RunningJob, "asyncio.Future[None]"], None]


class RunningJobs:
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._entries: set[RunningJob] = set()
        self._raws: Counter[bytes] = Counter()

    def add(self, job: ReceivedJob, lease: Lease) -> RunningJob:
        entry = RunningJob(job, lease)
        with self._condition:
            self._entries.add(entry)
            self._raws[job.raw] += 1
        return entry

    def finish(self, entry: RunningJob) -> None:
        """The job's coroutine is done (cleanup included): forget it, free its slot."""
        with self._condition:
            if entry in self._entries:
                self._entries.discard(entry)
                self._raws[entry.job.raw] -= 1
                if self._raws[entry.job.raw] <= 0:
                    del self._raws[entry.job.raw]
            if not self._entries:
                self._condition.notify_all()
        entry.lease.release()

    def holds(self, raw: bytes) -> bool:
        with self._condition:
            return raw in self._raws

    def __len__(self) -> int:
        return len(self._entries)

    def wait_empty(self, timeout: float | None) -> bool:
        with self._condition:
            return self._condition.wait_for(lambda: not self._entries, timeout)

    def job_of(self, task: asyncio.Task[Any] | None) -> ReceivedJob | None:
        """The job a task of the loop runs, if it is one (for the loop-lag watchdog)."""
        if task is None:
            return None
        with self._condition:
            return next((e.job for e in self._entries if e.task is task), None)

    def cancel_by_request(self, queue: str, job_id: str) -> int:
        """A producer cancelled this job: cancel its coroutine if it runs here (its runner
        then records it `cancelled`). Call on the loop; returns how many attempts it found."""
        with self._condition:
            found = [e for e in self._entries if e.job.id == job_id and e.job.queue == queue]
        for entry in found:
            entry.cancel_requested = True  # seen by its task as it begins, if it has not yet
            if entry.began and entry.task is not None:
                entry.task.cancel()
        return len(found)

    def permits(self) -> dict[str, list[tuple[str, str]]]:
        """By queue, the (limiter, job id) of each running job that holds a permit of its
        task's global concurrency (renewed with the heartbeat)."""
        held: dict[str, list[tuple[str, str]]] = {}
        with self._condition:
            for entry in self._entries:
                limits = entry.job.links.limits
                if limits is not None and limits.concurrency is not None and entry.attempt > 0:
                    held.setdefault(entry.job.queue, []).append((limits.limiter, entry.job.id))
        return held

    def count(self, queue: str) -> int:
        """How many jobs of `queue` run here."""
        with self._condition:
            return sum(1 for e in self._entries if e.job.queue == queue)

    def ids(self, queue: str) -> list[str]:
        """The ids of the jobs of `queue` that run here."""
        with self._condition:
            return [e.job.id for e in self._entries if e.job.queue == queue]

    def cancel_all(self) -> int:
        """Cancel every running job (shutdown); each requeues itself. Call on the loop."""
        with self._condition:
            entries = [entry for entry in self._entries if entry.task is not None]
        tasks: set[asyncio.Task[Any]] = set()
        for entry in entries:
            if entry.attempt and not entry.began:
                # Launched (its start counted), its task not yet run a step: a cancel now
                # would end the coroutine before its first line, and nothing would requeue it.
                entry.stop_requested = True
            elif entry.task is not None:
                tasks.add(entry.task)
        for task in tasks:
            task.cancel()
        return len(entries)
