"""Settling the jobs held for jobs that have ended, on the worker (docs/futures.md#dependencies).

The script that gives a job with dependents its final status publishes its id on the queue's
`settle` channel (producer/lua/lib/after.lua). The worker's listener (`worker.jobs.cancels`)
hears it and asks this to settle the queue; `run` does so one queue at a time, so a burst of
ids costs a few runs. Every worker of the queue hears it: they share the work, and each id is
settled once (producer/lua/settle.lua).
"""

from __future__ import annotations

import asyncio

import redis
import redis.asyncio
import structlog

from producer.async_client import AsyncProducer
from producer.keys import QueueKeys

log = structlog.get_logger()


class Settling:
    def __init__(self, client: redis.asyncio.Redis, queues: list[QueueKeys]) -> None:
        # The producer's steps on the worker's own client (never closed from here).
        self._producers = {
            keys.queue: AsyncProducer(client=client, queue=keys.queue, prefix=keys.prefix)
            for keys in queues
        }
        self._asked: set[str] = set()
        self._wake = asyncio.Event()

    def request(self, keys: QueueKeys) -> None:
        """Settle the queue soon (now, or once the run under way ends)."""
        self._asked.add(keys.queue)
        self._wake.set()

    async def run(self) -> None:
        """Settle the queues asked for, until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._asked:
                queue = self._asked.pop()
                try:
                    settled = await self._producers[queue].settle_dependents()
                except redis.RedisError as exc:  # the next message or subscription retries
                    log.warning("dependents.settle_failed", queue=queue, error=str(exc))
                    continue
                if settled:
                    log.debug("dependents.settled", queue=queue, jobs=settled)
