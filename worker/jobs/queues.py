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
import redis.cluster
import structlog

from producer.connection import async_node_client, is_cluster_client, sync_client
from producer.scripts import PipelinedScripts, ScriptCall, SyncScripts
from worker.jobs.cluster_routing import NodeRoutedScripts, refused_unrun
from worker.jobs.protocol import (
    RECOVER_TRIES,
    WORKER_SCRIPTS,
    QueueProtocol,
    Recovered,
    Taken,
    recovered,
)

log = structlog.get_logger()

UNBLOCK_TIMEOUT = 2.0  # seconds, for CLIENT UNBLOCK: Redis answers at once, or is unreachable


class SyncQueue:
    """The consumer thread's face of the protocol, on its own blocking connection.

    On a Cluster, the scripts and the blocking pop go straight to the node serving the queue's
    slot (`pop_client`): the Cluster client's routing of each command costs more than the
    command (a fifth of a no-op job's CPU), and the pop's connection can then be named
    (CLIENT ID) and its pop cut short there (CLIENT UNBLOCK, `unblocker`). A script the node
    refuses unrun (MOVED, ASK, TRYAGAIN, CLUSTERDOWN: the slot moves) is sent through the
    Cluster client, which follows the redirection and updates its map of slots; the node is
    then looked up again, as after any failed pop or lost connection.
    """

    def __init__(self, protocol: QueueProtocol, client: redis.Redis) -> None:
        self.protocol = protocol
        self.client = client
        self._scripts = SyncScripts(client, WORKER_SCRIPTS)
        self._cluster = is_cluster_client(client)
        self._node: redis.Redis | None = None  # on a Cluster: the queue's node, once looked up
        self._node_scripts: SyncScripts | None = None

    def run(self, call: ScriptCall) -> Any:
        if not self._cluster:
            return self._scripts.run(call)
        if self._node_scripts is None:
            self._node_scripts = SyncScripts(self.pop_client(), WORKER_SCRIPTS)
        try:
            return self._node_scripts.run(call)
        except redis.ResponseError as exc:
            if not refused_unrun(exc):
                raise
            self._forget_node()
            return self._scripts.run(call)  # follows the slot, and learns where it went
        except (redis.ConnectionError, redis.TimeoutError):
            self._forget_node()
            raise

    def take(self, most: int, *, trial: bool = False) -> Taken:
        call = self.protocol.take(most, _now_ms(), trial=trial)
        next_due, suspects, paused, *jobs = cast("list[Any]", self.run(call))
        return Taken(jobs, int(next_due), int(suspects), paused == 1)

    def pop(self, block: float) -> bytes | None:
        """Wait up to `block` seconds for a job, and move it into the processing list."""
        client = self.pop_client()
        try:
            raw = client.blmove(
                self.protocol.keys.ready,
                self.protocol.processing,
                block,  # type: ignore[arg-type]  # Redis takes fractions
                "RIGHT",
                "LEFT",
            )
        except redis.RedisError:
            self._forget_node()  # the slot may have moved: look the node up again
            raise
        return cast("bytes | None", raw)

    def pop_client(self) -> redis.Redis:
        if not self._cluster:
            return self.client
        if self._node is None:
            cluster = cast("redis.cluster.RedisCluster", self.client)
            node = cluster.get_node_from_key(self.protocol.keys.ready)  # type: ignore[no-untyped-call]
            self._node = cast("redis.Redis", node.redis_connection)
        return self._node

    def _forget_node(self) -> None:
        self._node = self._node_scripts = None

    def unblocker(self, redis_url: str) -> redis.Redis:
        """A client of its own (short timeouts, for another thread) that reaches the pop's
        connection: for CLIENT UNBLOCK, which Redis answers at once, or not at all."""
        if not self._cluster:
            return sync_client(redis_url, retries=0, socket_timeout=UNBLOCK_TIMEOUT)
        pool = self.pop_client().connection_pool
        options = {
            **pool.connection_kwargs,
            "socket_timeout": UNBLOCK_TIMEOUT,
            "socket_connect_timeout": UNBLOCK_TIMEOUT,
        }
        return redis.Redis(
            connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **options)
        )

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


def pipelined_worker_scripts(client: redis.asyncio.Redis, redis_url: str) -> PipelinedScripts:
    """The event loop's scripts; on a Cluster, sent straight to the nodes of their slots."""
    if not is_cluster_client(client):
        return PipelinedScripts(client, WORKER_SCRIPTS)
    return NodeRoutedScripts(
        client, WORKER_SCRIPTS, lambda host, port: async_node_client(redis_url, host, port)
    )


def _now_ms() -> int:
    return int(time.time() * 1000)
