"""Handing a consumer's jobs to the event loop, and their life here ending.

`JobPath` is what every consumer of a worker hands its jobs on to. `HandOff.launch` gives the
loop a batch taken together: normally the loop counts their starts in one round trip
(`JobRunner.start`, sharing it with other jobs' outcomes) and runs each; a job that came to an
idle worker by a blocking pop has its start counted by the consumer on the connection that
took it, so the loop only runs it (`JobRunner.launch`: one wake-up of the loop and one round
trip from the loop less on that path, docs/performance.md). Either way, a job's life here ends
when its coroutine does, or at once when it was not started; then its lease is released.

Whatever leaves a job in the consumer's processing list with no coroutine holding it (a start
that failed after a bug, an outcome that could not be written) sets the consumer's `reconcile`
event: its next take puts such jobs back in the ready list.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from producer.keys import QueueKeys
from worker.jobs.decode import ReceivedJob, RejectedJob
from worker.jobs.outcomes import start_call
from worker.jobs.priorities import QueueOrder
from worker.jobs.protocol import Started, start_token, started
from worker.jobs.queues import SyncQueue
from worker.jobs.running import JobDone, RunningJob, RunningJobs
from worker.jobs.slots import Slots
from worker.jobs.throughput import ThroughputCounter
from worker.metrics import WorkerMetrics

log = structlog.get_logger()


class Liveness(Protocol):
    """This worker's heartbeat, as the consumer needs it (`worker.process.heartbeat`)."""

    def fresh(self) -> bool:
        """Whether taking a job is safe: the liveness keys outlive the next beat."""


class Loop(Protocol):
    """The event loop's thread, as the consumer needs it (`worker.process.loop_thread`)."""

    def submit(self, coroutine: Coroutine[Any, Any, None]) -> Future[None]: ...

    def call_soon(self, callback: Callable[..., object], *args: object) -> None: ...


@dataclass(frozen=True, slots=True)
class JobPath:
    """What every consumer of a worker hands its jobs on to; built once by the worker."""

    slots: Slots
    running: RunningJobs
    loop: Loop
    # Counts the starts of a batch and runs its jobs (`JobRunner.start`).
    start_jobs: Callable[[list[RunningJob], str, JobDone, int | None], Coroutine[Any, Any, None]]
    # Runs the jobs of a batch whose starts were counted already (`JobRunner.launch`).
    launch: Callable[[list[RunningJob], list[Started], JobDone], None]
    decode: Callable[[bytes, QueueKeys], ReceivedJob | RejectedJob]
    heartbeat: Liveness
    metrics: WorkerMetrics
    stop: threading.Event  # set: take no more jobs
    # Which consumer takes a free slot first, for a worker of several queues (else None).
    order: QueueOrder | None = None
    # Counts the bad input dead-lettered here, for the queue's throughput history.
    throughput: ThroughputCounter = field(default_factory=ThroughputCounter)


class HandOff:
    """One consumer's hand-off of its jobs to the loop (`queue`: the consumer's own)."""

    def __init__(
        self, queue: SyncQueue, path: JobPath, reconcile: threading.Event, token_prefix: str
    ) -> None:
        self.keys = queue.protocol.keys
        self._queue = queue
        self._path = path
        self._reconcile = reconcile
        self._token_prefix = token_prefix

    def launch(self, batch: list[RunningJob], group: int | None, count_here: bool) -> None:
        """Hand the loop a batch of jobs registered with their leases. `count_here`: count
        their starts from the calling (consumer) thread first."""
        # One token per batch: a start sent again after a lost reply counts nothing twice.
        token = start_token(self._token_prefix)
        if count_here:
            starts = self._count_starts(batch, token, group)
            if starts is not None:
                self._path.loop.call_soon(self._run_counted, batch, starts)
                return
        # Counted on the loop, where a busy worker's starts share round trips with outcomes.
        start = self._path.start_jobs(batch, token, self._job_done, group)
        future = self._path.loop.submit(start)
        future.add_done_callback(lambda done: self._batch_started(batch, done))

    def _count_starts(
        self, batch: list[RunningJob], token: str, group: int | None
    ) -> list[Started] | None:
        """Count the batch's starts on the consumer's connection, which has just taken the
        jobs: the loop then only runs them, one thread wake-up and round trip less on an idle
        worker's path. None when that failed: the loop counts them then, with the same token
        (nothing counted twice), waiting out an outage or dead-lettering them after a bug."""
        try:
            return started(self._queue.run(start_call(self._queue.protocol, batch, token, group)))
        except Exception as exc:  # noqa: BLE001 - the loop's path deals with every failure
            log.debug("consumer.start_on_loop", queue=self.keys.queue, error=repr(exc))
            return None

    def _run_counted(self, batch: list[RunningJob], starts: list[Started]) -> None:
        # On the loop thread. A job not started (attempt 0) ends its life here now.
        try:
            self._path.launch(batch, starts, self._job_done)
        except Exception:  # a bug: the jobs not started go back with the next take
            self._reconcile.set()
            log.exception("consumer.launch_failed", queue=self.keys.queue)
        for entry in batch:
            if entry.attempt == 0:
                self._path.running.finish(entry)

    def _batch_started(self, batch: list[RunningJob], future: Future[None]) -> None:
        # On the loop thread. Jobs whose start was not counted never ran: their life here
        # ends now. A start cut short by shutdown leaves them in the processing list.
        for entry in batch:
            if entry.attempt == 0:
                self._path.running.finish(entry)
        error = None if future.cancelled() else future.exception()
        if error is not None:  # a bug: the jobs not started go back with the next take
            self._reconcile.set()
            log.error("consumer.launch_failed", queue=self.keys.queue, error=repr(error))

    def _job_done(self, entry: RunningJob, future: Future[None] | asyncio.Future[None]) -> None:
        # On the loop thread, once the job's coroutine has finished, cleanup included.
        self._path.running.finish(entry)
        error = None if future.cancelled() else future.exception()
        if error is not None and not isinstance(error, asyncio.CancelledError):
            # The runner could not record an outcome (a bug, or a Redis error that waiting
            # cannot cure): the job is still in our processing list. The next take puts such
            # jobs back in the ready list, so it runs again rather than wait for a restart.
            self._reconcile.set()
            log.error(
                "job.unrecorded",
                job_id=entry.job.id,
                queue=self.keys.queue,
                error=f"{type(error).__name__}: {error}",
                detail="the job goes back to the ready list",
            )
