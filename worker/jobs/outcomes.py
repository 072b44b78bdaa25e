"""Writing what happens to a job's attempts: its start, then success, a retry later, death,
or a return to the queue at shutdown.

Each write is one script call on the keys of the job's queue (`worker.jobs.protocol`), fenced
so that only the attempt this worker runs can settle the job. While Redis is unreachable the
writes wait and try again (`worker.redis_health`): an outcome reached during an outage is written
once Redis is back, never dropped.
"""

from __future__ import annotations

import time
import traceback as traceback_module
from collections.abc import Mapping
from typing import Any

import structlog

from producer.scripts import ScriptCall
from worker.errors import JobError
from worker.jobs.promoter import Promoter
from worker.jobs.protocol import Failure, JobStart, QueueProtocol, Started, started
from worker.jobs.queues import AsyncQueue
from worker.jobs.running import RunningJob
from worker.redis_health import AsyncOutages

log = structlog.get_logger()


def start_call(
    protocol: QueueProtocol, batch: list[RunningJob], token: str, group: int | None
) -> ScriptCall:
    """The script call that counts the start of jobs taken together from one queue."""
    starts = [
        JobStart(job.id, job.raw, job.task, job.max_attempts, job.envelope.enqueued_at, job.links)
        for job in (entry.job for entry in batch)
    ]
    return protocol.start(starts, token, group)


class OutcomeStore:
    def __init__(self, queues: Mapping[str, AsyncQueue], outages: AsyncOutages) -> None:
        self._queues = queues
        self._outages = outages
        self._promoters = {name: Promoter(queue) for name, queue in queues.items()}

    async def start(self, batch: list[RunningJob], token: str, group: int | None) -> list[Started]:
        """Count the start of jobs taken together from one queue (one script call). Sent
        again after a lost reply with the same `token`, it counts nothing twice."""
        queue = self._queues[batch[0].job.queue]
        return started(await self._run(queue, start_call(queue.protocol, batch, token, group)))

    def promoter(self, queue: str) -> Promoter:
        """What promotes the queue's delayed jobs at the due times this worker knows of."""
        return self._promoters[queue]

    async def reject(self, running: RunningJob, failure: Failure) -> bool:
        """Dead-letter a job that could not be started (a bug, not the job's fault), its
        attempts left as they are."""
        job = running.job
        queue = self._queues[job.queue]
        call = queue.protocol.dead_letter(job.id, job.raw, job.task, failure, None, job.links)
        return bool(await self._run(queue, call))

    # `succeed`, `dead` and `retry` return 1 when written, CANCELLED_INSTEAD when a producer
    # had asked for the job to be cancelled (recorded `cancelled` then), 0 when not held.

    async def succeed(self, running: RunningJob, result_json: bytes) -> int:
        job = running.job
        queue = self._queues[job.queue]
        call = queue.protocol.ack(job.id, job.raw, result_json, running.attempt, job.links)
        return int(await self._run(queue, call))

    async def dead(self, running: RunningJob, error: JobError) -> int:
        job = running.job
        queue = self._queues[job.queue]
        call = queue.protocol.dead_letter(
            job.id, job.raw, job.task, failure_of(error), running.attempt, job.links
        )
        return int(await self._run(queue, call))

    async def retry(self, running: RunningJob, error: JobError, delay: float) -> int:
        """Move the job to the delayed set, due in `delay` seconds, and record the failure."""
        job = running.job
        queue = self._queues[job.queue]
        due_ms = int((time.time() + delay) * 1000)
        call = queue.protocol.retry(
            job.id, job.raw, failure_of(error), running.attempt, due_ms, job.links
        )
        scheduled = int(await self._run(queue, call))
        if scheduled == 1:
            # The consumers promote due jobs each time they take; an idle one is blocked in
            # its pop, so promote this one at its due time (pushing it wakes the pop).
            self.promoter(job.queue).once_at(delay)
        return scheduled

    async def progress(self, running: RunningJob, fraction: float, note: str, at: float) -> bool:
        """Record the job's progress, once (no waiting out an outage: it is best effort)."""
        job = running.job
        queue = self._queues[job.queue]
        call = queue.protocol.progress(job.id, running.attempt, fraction, note, at)
        return bool(await queue.run(call))

    async def requeue(self, running: RunningJob, *, give_up_after: float) -> bool:
        """Return a job stopped by shutdown to the front of its queue, its start taken back."""
        job = running.job
        queue = self._queues[job.queue]
        call = queue.protocol.requeue(job.id, job.raw, undo_start=True, links=job.links)
        return bool(await self._run(queue, call, give_up_after=give_up_after))

    async def _run(
        self, queue: AsyncQueue, call: ScriptCall, *, give_up_after: float | None = None
    ) -> Any:
        return await self._outages.call(
            lambda: queue.run(call), where=f"job.{call.script}", give_up_after=give_up_after
        )


def failure_of(error: JobError) -> Failure:
    return Failure(error.reason, str(error), format_traceback(error))


def format_traceback(error: BaseException) -> str:
    """The traceback of what the handler raised (the cause of a wrapping JobError)."""
    cause = error.__cause__ or error
    if cause.__traceback__ is None:
        return ""
    return "".join(traceback_module.format_exception(cause))
