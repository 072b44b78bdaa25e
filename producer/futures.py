"""Jobs as futures (docs/futures.md): `AsyncJob` is an `asyncio.Future`, `Job` a
`concurrent.futures.Future`, each standing for one job pushed to Redis and run by any worker.

A job's future resolves to the job's result when it succeeds, raises `JobFailed` when it ends
dead, and is cancelled when the job is cancelled. Cancelling the future cancels the job
itself, on whichever worker runs it (as cancelling an asyncio task cancels its coroutine):
so does anything that cancels what it awaits, `asyncio.wait_for` at its timeout included.
Wait through `asyncio.shield(job)` to stop waiting without cancelling the job.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from producer.completions import Deliver, Progressed
from producer.errors import JobFailed
from producer.statuses import JobStatus

# Asks Redis to cancel the job (the future is cancelled locally at once).
CancelJob = Callable[[str, str], None]


def _outcome_of(job_id: str, record: dict[str, Any]) -> tuple[str, Any]:
    """('result', value), ('error', JobFailed) or ('cancelled', None) for a final record."""
    status = record.get("status")
    if status == JobStatus.SUCCEEDED:
        return "result", record.get("result")
    if status == JobStatus.DEAD:
        return "error", JobFailed(job_id, record)
    return "cancelled", None


def _settle(job: AsyncJob | Job, outcome: dict[str, Any] | BaseException) -> None:
    """Resolve a job's future from its final record, or from the error that ended the wait."""
    if job.done():
        return
    try:
        if isinstance(outcome, BaseException):
            job.set_exception(outcome)
            return
        job.record = outcome
        job.progressed(outcome)
        kind, value = _outcome_of(job.id, outcome)
        if kind == "result":
            job.set_result(value)
        elif kind == "error":
            job.set_exception(value)
        else:
            job.cancel_here()
    except (asyncio.InvalidStateError, concurrent.futures.InvalidStateError):
        pass  # its owner cancelled it meanwhile (from another thread)


def callbacks_of(
    jobs: Sequence[AsyncJob] | Sequence[Job],
) -> tuple[dict[str, Deliver], dict[str, Progressed]]:
    """What a completion listener calls for these jobs: each one's `settle`, and its
    `progressed` (`CompletionListener.watch(keys, *callbacks_of(jobs))`)."""
    return {job.id: job.settle for job in jobs}, {job.id: job.progressed for job in jobs}


class AsyncJob(asyncio.Future[Any]):
    """A job pushed to Redis, as an asyncio future (`AsyncProducer.submit`, `.job`)."""

    def __init__(
        self, job_id: str, queue: str, cancel_job: CancelJob, *, loop: asyncio.AbstractEventLoop
    ) -> None:
        super().__init__(loop=loop)
        self.id = job_id
        self.queue = queue
        self.record: dict[str, Any] | None = None  # the final record, once there is one
        self.progress: float | None = None  # as the task last reported it (0 to 1)
        self.progress_note: str | None = None
        self.pushed = False  # pushed by this process (so known to exist)
        self._cancel_job = cancel_job

    def cancel(self, msg: Any | None = None) -> bool:
        """Cancel the job itself (queued, delayed or running), and this future at once."""
        if self.done():
            return False
        self._cancel_job(self.id, self.queue)
        return super().cancel(msg)

    def settle(self, outcome: dict[str, Any] | BaseException) -> None:
        """Resolve from the job's final record (or the error that ended the wait)."""
        _settle(self, outcome)

    def cancel_here(self) -> None:
        """The job was cancelled: cancel this future only."""
        super().cancel(f"job {self.id} was cancelled")

    def progressed(self, record: dict[str, Any]) -> None:
        """The job, still running, reported progress."""
        self.progress = record.get("progress")
        self.progress_note = record.get("progress_note")

    def __repr__(self) -> str:
        return f"<AsyncJob {self.id} queue={self.queue} {self._state.lower()}>"


class Job(concurrent.futures.Future[Any]):
    """A job pushed to Redis, as a `concurrent.futures.Future` (`Producer.submit`, `.job`)."""

    def __init__(self, job_id: str, queue: str, cancel_job: CancelJob) -> None:
        super().__init__()
        self.id = job_id
        self.queue = queue
        self.record: dict[str, Any] | None = None
        self.progress: float | None = None
        self.progress_note: str | None = None
        self.pushed = False  # pushed by this process (so known to exist)
        self._cancel_job = cancel_job

    def cancel(self) -> bool:
        """Cancel the job itself (queued, delayed or running), and this future at once."""
        if self.done():
            return False
        self._cancel_job(self.id, self.queue)
        return self.cancel_here()

    def settle(self, outcome: dict[str, Any] | BaseException) -> None:
        """As `AsyncJob.settle`; called from the producer's listener thread."""
        _settle(self, outcome)

    def cancel_here(self) -> bool:
        """The job was cancelled: cancel this future only."""
        if not super().cancel():
            return False
        # What an executor does for a future it will not run: without it, waiters of
        # `concurrent.futures.wait` and `as_completed` would not hear of the cancel.
        # The other thread (listener or owner) may have just done it: RuntimeError then.
        with contextlib.suppress(RuntimeError):
            self.set_running_or_notify_cancel()
        return True

    def progressed(self, record: dict[str, Any]) -> None:
        """The job, still running, reported progress (from the listener's thread)."""
        self.progress = record.get("progress")
        self.progress_note = record.get("progress_note")

    def __repr__(self) -> str:
        return f"<Job {self.id} queue={self.queue} {self._state.lower()}>"
