"""Hearing that a producer cancelled a job this worker runs (docs/futures.md#cancel), and
that jobs held for others are to be settled (docs/futures.md#dependencies).

A producer cancels a running job by setting `cancel_requested` on its record and publishing
its id on the queue's `cancel` channel. This listener, on the event loop, subscribes to the
channel of every queue the worker serves and cancels the coroutine of the job named, if it
runs here; the runner then records the job `cancelled`. After each (re)subscription it reads
the records of the jobs running here, so a request published while it was away is not missed.
And if none of that reaches the worker, the request still holds: the script that records the
attempt's outcome finds it and records `cancelled` instead.

On the same connection it subscribes to each queue's `settle` channel, and settles the queue
(`worker.jobs.settling`) on each message and after each (re)subscription, which also covers
whatever was published while it was away.
"""

from __future__ import annotations

import asyncio
import contextlib

import redis
import redis.asyncio
import structlog

from producer.keys import QueueKeys
from worker.jobs.running import RunningJobs
from worker.jobs.settling import Settling

log = structlog.get_logger()

FIRST_PAUSE = 0.05
LONGEST_PAUSE = 2.0
_CONNECTION_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


class CancelListener:
    def __init__(
        self, client: redis.asyncio.Redis, queues: list[QueueKeys], running: RunningJobs
    ) -> None:
        self._client = client
        self._by_channel = {keys.cancel_channel: keys for keys in queues}
        self._by_settle_channel = {keys.settle_channel: keys for keys in queues}
        self._settling = Settling(client, queues)
        self._running = running
        # Set once every channel is subscribed: the worker starts taking jobs after that (and
        # so is not stopped while redis-py is still setting the connection up).
        self.subscribed = asyncio.Event()

    def tasks(self) -> list[asyncio.Task[None]]:
        """Listening and settling, each a task of its own until cancelled, to be stopped by the
        caller with the worker's other housekeeping (`cancel_until_done`): redis-py may swallow
        a cancel that lands as it sets up a connection, so one cancel does not always stop
        them. (Run under one `gather` or task group, such a task outlived its parent, its
        connection still open as the loop closed.)"""
        return [
            asyncio.create_task(self.listen(), name="cancels"),
            asyncio.create_task(self._settling.run(), name="settling"),
        ]

    async def listen(self) -> None:
        """Listen until cancelled, reconnecting after connection errors."""
        pause = FIRST_PAUSE
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(*self._by_channel, *self._by_settle_channel)
                channels = len(self._by_channel) + len(self._by_settle_channel)
                async for message in pubsub.listen():
                    if message["type"] == "subscribe" and message["data"] == channels:
                        self.subscribed.set()  # the last channel's confirmation
                    channel = _text(message["channel"])
                    settle = self._by_settle_channel.get(channel)
                    if settle is not None:
                        if message["type"] in ("subscribe", "message"):
                            self._settling.request(settle)
                        continue
                    keys = self._by_channel.get(channel)
                    if keys is None:
                        continue
                    if message["type"] == "subscribe":
                        # Subscribed (again, after a reconnect): requests made meanwhile.
                        pause = FIRST_PAUSE
                        await self._look_at_records(keys)
                    elif message["type"] == "message":
                        self._cancel(keys.queue, _text(message["data"]))
            except _CONNECTION_ERRORS as exc:
                log.info("cancels.reconnecting", error=f"{type(exc).__name__}: {exc}")
            finally:
                with contextlib.suppress(redis.RedisError, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(pause)
            pause = min(LONGEST_PAUSE, pause * 2)

    def _cancel(self, queue: str, job_id: str) -> None:
        if self._running.cancel_by_request(queue, job_id):
            log.info("job.cancel_requested", job_id=job_id, queue=queue)
        else:  # every worker of the queue hears it; one runs the job, if any does
            log.debug("job.cancel_requested", job_id=job_id, queue=queue, runs_here=False)

    async def _look_at_records(self, keys: QueueKeys) -> None:
        ids = self._running.ids(keys.queue)
        if not ids:
            return
        pipe = self._client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hexists(keys.job(job_id), "cancel_requested")
        for job_id, requested in zip(ids, await pipe.execute(), strict=True):
            if requested:
                self._cancel(keys.queue, job_id)
