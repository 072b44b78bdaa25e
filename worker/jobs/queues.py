"""The worker's protocol (`worker.jobs.protocol`) run on Redis clients.

`SyncQueue` runs the steps of the consumer thread on its own blocking client; `AsyncQueue`
those of the event loop (outcomes, promotion, recovery, ticks) on a pipelined asyncio client,
where the calls of many coroutines share round trips.
"""

from __future__ import annotations

import time
from typing import Any, cast

import redis
import redis.asyncio
import structlog

from producer.scripts import PipelinedScripts, ScriptCall, SyncScripts
from worker.jobs.protocol import (
    RECOVER_TRIES,
    WORKER_SCRIPTS,
    QueueProtocol,
    Recovered,
    Taken,
    recovered,
)

log = structlog.get_logger()


class SyncQueue:
    """The consumer thread's face of the protocol, on its own blocking connection."""

    def __init__(self, protocol: QueueProtocol, client: redis.Redis) -> None:
        self.protocol = protocol
        self.client = client
        self._scripts = SyncScripts(client, WORKER_SCRIPTS)

    def run(self, call: ScriptCall) -> Any:
        return self._scripts.run(call)

    def take(self, most: int, *, trial: bool = False) -> Taken:
        call = self.protocol.take(most, _now_ms(), trial=trial)
        next_due, suspects, paused, *jobs = cast("list[Any]", self.run(call))
        return Taken(jobs, int(next_due), int(suspects), paused == 1)

    def pop(self, block: float) -> bytes | None:
        """Wait up to `block` seconds for a job, and move it into the processing list."""
        raw = self.client.blmove(
            self.protocol.keys.ready,
            self.protocol.processing,
            block,  # type: ignore[arg-type]  # Redis takes fractions
            "RIGHT",
            "LEFT",
        )
        return cast("bytes | None", raw)

    def held(self) -> list[bytes]:
        return cast("list[bytes]", self.client.lrange(self.protocol.processing, 0, -1))

    def recover_own(self) -> Recovered:
        """Take back this worker's leftovers from an earlier life (same worker id)."""
        protocol = self.protocol
        found = Recovered(changed=True)
        for _ in range(RECOVER_TRIES):
            held = self.held()
            found = recovered(self.run(protocol.recover(protocol.worker_id, held, own=True)))
            if not found.changed:
                break
        return found


class AsyncQueue:
    """The event loop's face of the protocol: many coroutines' calls share round trips."""

    def __init__(
        self, protocol: QueueProtocol, scripts: PipelinedScripts, client: redis.asyncio.Redis
    ) -> None:
        self.protocol = protocol
        self._scripts = scripts
        self._client = client

    async def run(self, call: ScriptCall) -> Any:
        return await self._scripts.run(call)

    async def promote(self) -> int:
        return int(await self.run(self.protocol.promote(_now_ms())))

    async def recover(self, owner: str) -> Recovered:
        """Take back the jobs of `owner` if it is gone. The first call declares no record:
        it finds the owner alive, or holding nothing, in one step; only a lost worker's
        list is read, and its jobs' records named, for the call that moves them."""
        found = recovered(await self.run(self.protocol.recover(owner, [])))
        for _ in range(RECOVER_TRIES):
            if not found.changed:
                break
            key = self.protocol.keys.processing(owner)
            held = cast("list[bytes]", await self._client.lrange(key, 0, -1))
            found = recovered(await self.run(self.protocol.recover(owner, held)))
        return found


def log_recovered(queue: str, owner: str, found: Recovered) -> None:
    """One line per lost worker's list taken back (worker id `owner`)."""
    log.warning(
        "jobs.recovered",
        owner=owner,
        queue=queue,
        count=found.requeued + found.suspects,
        requeued=found.requeued,
        suspects=found.suspects,
        blamed=found.blamed,
    )


def pipelined_worker_scripts(client: redis.asyncio.Redis) -> PipelinedScripts:
    return PipelinedScripts(client, WORKER_SCRIPTS)


def _now_ms() -> int:
    return int(time.time() * 1000)
