"""Writing what happened to a job: its start, success, death, or return to the queue.

Every write is one Lua script on the keys of the job's queue, so it is atomic and valid on a
Redis Cluster. While Redis is unreachable the writes wait and retry with capped backoff: an
outcome reached during an outage is written once Redis is back, never dropped.
"""

from __future__ import annotations

import asyncio
import time
import traceback as traceback_module
from typing import Any

import redis
import redis.asyncio
import structlog

from producer.connection import is_transient, needs_reconnect
from producer.keys import QueueKeys
from producer.scripts import (
    PipelinedScripts,
    ScriptCall,
    ack_call,
    dead_call,
    promote_call,
    requeue_call,
    retry_call,
)
from worker.errors import JobError
from worker.job import ReceivedJob, dead_entry
from worker.redis_health import ReconnectDelay, RedisHealth
from worker.settings import WorkerSettings

log = structlog.get_logger()

# Most due delayed jobs promoted in one round trip.
PROMOTE_BATCH = 500


class OutcomeStore:
    def __init__(
        self, client: redis.asyncio.Redis, settings: WorkerSettings, health: RedisHealth
    ) -> None:
        self._client = client
        self._scripts = PipelinedScripts(client)
        self._settings = settings
        self._health = health
        self.worker_id = settings.worker_id
        self._background: set[asyncio.Future[None]] = set()

    async def _run(self, call: ScriptCall, *, give_up_after: float | None = None) -> Any:
        """Run a script, waiting out Redis outages (until `give_up_after` seconds, if given)."""
        delay = ReconnectDelay()
        deadline = None if give_up_after is None else time.monotonic() + give_up_after
        while True:
            try:
                result = await self._scripts.run(call)
            except redis.RedisError as exc:
                if not is_transient(exc):
                    raise
                self._health.failed(exc, where=f"job.{call.script}")
                if needs_reconnect(exc):
                    await self._client.connection_pool.disconnect()
                pause = delay.next_delay()
                if deadline is not None and time.monotonic() + pause > deadline:
                    raise
                await asyncio.sleep(pause)
            else:
                self._health.succeeded()
                return result

    async def succeed(self, job: ReceivedJob, result_json: bytes, attempt: int) -> bool:
        call = ack_call(
            job.keys,
            job.id,
            worker_id=self.worker_id,
            raw=job.raw,
            result_json=result_json,
            finished_at=time.time(),
            ttl=self._settings.result_ttl,
            attempt=attempt,
        )
        return bool(await self._run(call))

    async def dead(self, job: ReceivedJob, error: JobError, attempt: int) -> bool:
        trace = format_traceback(error)
        call = dead_call(
            job.keys,
            job.id,
            worker_id=self.worker_id,
            raw=job.raw,
            entry_json=dead_entry(
                job_id=job.id,
                queue=job.queue,
                task=job.task,
                reason=error.reason,
                error=str(error),
                traceback=trace,
                attempts=attempt,
                worker_id=self.worker_id,
                raw=job.raw,
            ),
            reason=error.reason,
            error=str(error),
            traceback=trace,
            finished_at=time.time(),
            ttl=self._settings.result_ttl,
            attempt=attempt,
        )
        return bool(await self._run(call))

    async def retry(self, job: ReceivedJob, error: JobError, attempt: int, delay: float) -> bool:
        """Move the job to the delayed set, due in `delay` seconds, and record the failure."""
        call = retry_call(
            job.keys,
            job.id,
            worker_id=self.worker_id,
            raw=job.raw,
            due_ms=int((time.time() + delay) * 1000),
            reason=error.reason,
            error=str(error),
            traceback=format_traceback(error),
            ttl=self._settings.result_ttl,
            attempt=attempt,
        )
        scheduled = bool(await self._run(call))
        if scheduled:
            # The consumers promote due jobs each time they take; an idle one is blocked in
            # its pop, so promote this one at its due time (pushing it wakes the pop).
            asyncio.get_running_loop().call_later(delay, self._promote_later, job.keys)
        return scheduled

    def _promote_later(self, keys: QueueKeys) -> None:
        task = asyncio.ensure_future(self._promote(keys))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _promote(self, keys: QueueKeys) -> None:
        call = promote_call(keys, int(time.time() * 1000), PROMOTE_BATCH)
        try:
            await self._scripts.run(call)
        except redis.RedisError as exc:  # the next take promotes it anyway
            log.info("job.promote_failed", queue=keys.queue, error=str(exc))

    async def requeue(self, job: ReceivedJob, *, give_up_after: float) -> bool:
        """Return a job stopped by shutdown to the front of its queue, uncounted."""
        call = requeue_call(job.keys, job.id, worker_id=self.worker_id, raw=job.raw)
        return bool(await self._run(call, give_up_after=give_up_after))


def format_traceback(error: BaseException) -> str:
    """The traceback of what the handler raised (the cause of a wrapping JobError)."""
    cause = error.__cause__ or error
    if cause.__traceback__ is None:
        return ""
    return "".join(traceback_module.format_exception(cause))
