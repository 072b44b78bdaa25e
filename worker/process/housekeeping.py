"""Housekeeping on the event loop: recovering the jobs of lost workers and the permits of
limited tasks they held, and declaring this worker's unique tasks to the producers.

(Due delayed jobs are promoted by the consumers' take script, and at the due times this
worker knows of; see `worker.jobs.consumer` and `worker.jobs.promoter`.)

Each loop logs and survives its own errors (a Redis outage included) and lets cancellation
through, so shutdown stops it at once (`cancel_until_done`).
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable, Callable, Iterable

import redis
import redis.asyncio
import structlog

from producer.keys import workers_key
from worker.jobs.queues import AsyncQueue, log_recovered
from worker.metrics import WorkerMetrics
from worker.redis_health import AsyncOutages, permission_refused
from worker.registry import TaskRegistry

log = structlog.get_logger()

# How often every processing list is also looked for by SCAN, in case its owner's id
# is missing from the set of workers.
FULL_SCAN_EVERY = 600.0

# How often every queue's limiters are swept (lapsed permits are swept after a recovery).
LIMIT_SWEEP_EVERY = 60.0
SWEEP_AFTER_RECOVERY = 1.0

# How often `cancel_until_done` cancels again the tasks that have not ended.
CANCEL_AGAIN_EVERY = 0.1


async def run_periodically(
    name: str, step: Callable[[], Awaitable[float]], outages: AsyncOutages
) -> None:
    """Call `step` forever; it returns how long to wait before the next call."""
    while True:
        try:
            pause = await step()
        except asyncio.CancelledError:
            raise
        except redis.RedisError as exc:
            if not await outages.failed(exc, where=name):
                log.error("housekeeping.redis_error", loop=name, error=str(exc))
            pause = 1.0
        except Exception:
            log.exception("housekeeping.failed", loop=name)
            pause = 1.0
        else:
            outages.succeeded()
        await asyncio.sleep(pause)


async def cancel_until_done(
    tasks: Iterable[asyncio.Task[None]], within: float
) -> set[asyncio.Task[None]]:
    """Cancel `tasks` and wait for them to end, cancelling again any that carry on; return
    those still running after `within` seconds.

    One cancel is not enough: on Python 3.11, `asyncio.wait_for` (redis-py times out each
    send with it) swallows a cancel that arrives as the call it waits for ends, and the task
    goes on to its next round as if it had never been cancelled.
    """
    pending = {task for task in tasks if not task.done()}
    deadline = asyncio.get_running_loop().time() + within
    while pending:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            break
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(CANCEL_AGAIN_EVERY, left))
    return pending


def describe_task(task: asyncio.Task[None]) -> str:
    """The task's name and where it waits, to report one that did not stop."""
    where = io.StringIO()
    task.print_stack(file=where)
    return f"{task.get_name()}: {where.getvalue()}"


async def warn_if_redis_may_evict(client: redis.asyncio.Redis, outages: AsyncOutages) -> None:
    """Warn when Redis may evict keys under memory pressure: queued jobs would vanish."""
    try:
        policy = (await client.config_get("maxmemory-policy")).get("maxmemory-policy")
    except redis.RedisError as exc:
        if not permission_refused(exc):  # a user without CONFIG needs none
            await outages.failed(exc, where="start")
        return  # else CONFIG is disabled, as it often is on managed Redis
    if policy is not None and policy != "noeviction":
        log.warning(
            "redis.eviction_policy",
            policy=policy,
            detail="Redis may evict queue keys when full (jobs lost); set "
            "maxmemory-policy noeviction",
        )


# How often a worker declares its unique tasks again (a key deleted by hand comes back).
DECLARE_UNIQUE_EVERY = 300.0


class UniqueTaskDeclaration:
    """Declares the worker's unique tasks in each queue it serves (`coroq:{Q}:unique_tasks`,
    read by producers: producer/unique_tasks.py), and withdraws its other tasks from it, so a
    task that stops being unique stops being deduplicated once its new workers start."""

    def __init__(
        self, client: redis.asyncio.Redis, queues: list[AsyncQueue], registry: TaskRegistry
    ) -> None:
        self._redis = client
        self._keys = [queue.protocol.keys for queue in queues]
        self._unique = {name: task.to_json() for name, task in registry.unique_tasks().items()}
        self._others = [name for name in registry.names() if name not in self._unique]

    async def step(self) -> float:
        pipe = self._redis.pipeline(transaction=False)
        for keys in self._keys:
            if self._unique:
                pipe.hset(keys.unique_tasks, mapping=self._unique)  # type: ignore[arg-type]
            if self._others:
                pipe.hdel(keys.unique_tasks, *self._others)
        await pipe.execute()
        return DECLARE_UNIQUE_EVERY


class LimitSweeper:
    """Hands the permits of limited tasks that lapsed with a lost worker on to the jobs
    blocked waiting for them (docs/scheduling.md#rate-limits-and-global-concurrency). A permit
    given up by a job that ends is handed on at once, by the script that ends it; one that
    lapses does so with its worker's liveness, so the reaper asks for a sweep of the queue
    soon after it took a lost worker's jobs back, and every queue is swept now and then."""

    def __init__(self, client: redis.asyncio.Redis, queues: list[AsyncQueue]) -> None:
        self._redis = client
        self._queues = {queue.protocol.keys.queue: queue for queue in queues}
        self._soon: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()

    async def step(self) -> float:
        for queue in self._queues.values():
            await self.sweep(queue)
        return LIMIT_SWEEP_EVERY

    def sweep_soon(self, queue: str) -> None:
        """Sweep `queue` in a moment: the permits of a lost worker lapse a few milliseconds
        after its liveness key, whose lapse the reaper saw."""
        if queue in self._soon:
            return
        self._soon.add(queue)
        asyncio.get_running_loop().call_later(SWEEP_AFTER_RECOVERY, self._sweep_later, queue)

    def _sweep_later(self, queue: str) -> None:
        self._soon.discard(queue)
        task = asyncio.create_task(self._sweep_quietly(self._queues[queue]))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _sweep_quietly(self, queue: AsyncQueue) -> None:
        try:
            await self.sweep(queue)
        except redis.RedisError as exc:  # the periodic sweep comes anyway
            log.info("limits.sweep_failed", queue=queue.protocol.keys.queue, error=str(exc))

    async def sweep(self, queue: AsyncQueue) -> None:
        limiters = await self._redis.hkeys(queue.protocol.keys.limited)
        for limiter in limiters:
            name = limiter.decode() if isinstance(limiter, bytes) else str(limiter)
            moved = int(await queue.run(queue.protocol.unblock(name)))
            if moved:
                log.info(
                    "limits.unblocked", queue=queue.protocol.keys.queue, limiter=name, count=moved
                )


class Reaper:
    """Takes back the jobs of workers whose heartbeat expired: those they had not started go
    back to the ready list, those they ran to the suspects (docs/reliability.md#blame)."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        queues: list[AsyncQueue],
        *,
        interval: float,
        metrics: WorkerMetrics,
        on_suspects: Callable[[str], None],
        on_recovered: Callable[[str], None] = lambda queue: None,
        watch_lost_for: float = 0.0,
    ) -> None:
        self._redis = client
        self._queues = queues
        self._interval = interval
        self._metrics = metrics
        self._on_suspects = on_suspects  # wakes this worker's consumer of that queue
        self._on_recovered = on_recovered  # the jobs' permits lapsed too: sweep the queue
        # A lost worker of our queues may still be handed a job by a pop it left pending in
        # Redis: its list is looked at this long after it was first found lost and empty.
        # Workers never seen alive in our queues (they serve others) are not watched.
        self._watch_lost_for = watch_lost_for
        self._lost_since: dict[str, float] = {}
        self._seen_alive: set[str] = set()
        self._prefix = queues[0].protocol.keys.prefix
        self._worker_id = queues[0].protocol.worker_id

    async def step(self) -> float:
        """Recover the jobs of every listed worker that is gone; the regular pass. One read
        of the set of workers, one read of their liveness keys per queue; a recovery call
        (which checks again, inside Redis) only for those whose key is gone."""
        members = await self._redis.smembers(workers_key(self._prefix))
        owners = sorted({m.decode() if isinstance(m, bytes) else str(m) for m in members})
        owners = [owner for owner in owners if owner != self._worker_id]
        if owners:
            await self._recover_all(await self._lapsed(owners))
        return self._interval

    async def _lapsed(self, owners: list[str]) -> set[str]:
        """The owners whose liveness key is gone in one of our queues."""
        lapsed: set[str] = set()
        reads = [
            self._redis.mget([queue.protocol.keys.worker(owner) for owner in owners])
            for queue in self._queues
        ]
        for beats in await asyncio.gather(*reads):
            for owner, beat in zip(owners, beats, strict=True):
                if beat:
                    self._seen_alive.add(owner)
                else:
                    lapsed.add(owner)
        return lapsed

    async def scan_step(self) -> float:
        """Recover the jobs of workers missing from the set of workers, found by SCAN.

        A loop of its own: a SCAN over a large keyspace (and a slow link) takes a while, and
        must not hold up the regular pass.
        """
        await self._recover_all(await self._owners_by_scan())
        return FULL_SCAN_EVERY

    async def _recover_all(self, owners: set[str]) -> None:
        owners.discard(self._worker_id)
        # Together: their script calls share round trips on the loop's pipelined client, so
        # lost workers watched for a while do not hold up the one that just died.
        await asyncio.gather(*(self._recover(owner) for owner in owners))

    async def _recover(self, owner: str) -> None:
        keep = False
        for queue in self._queues:
            found = await queue.recover(owner)
            moved = found.requeued + found.suspects
            if moved:
                name = queue.protocol.keys.queue
                log_recovered(name, owner, found)
                self._metrics.jobs_recovered(name, found.requeued, found.suspects, found.blamed)
                if found.suspects:
                    self._on_suspects(name)
                self._on_recovered(name)
            # Alive, or just emptied (look again next time): forget it only once it is seen
            # dead and holding nothing, in one read, for a while.
            keep = keep or found.alive or found.changed or bool(moved)
            if found.alive:
                self._lost_since.pop(owner, None)
        now = time.monotonic()
        if not keep and owner in self._seen_alive:
            keep = now - self._lost_since.setdefault(owner, now) < self._watch_lost_for
        if not keep:
            self._lost_since.pop(owner, None)
            self._seen_alive.discard(owner)
            # Gone, and nothing left to recover in the queues we serve. If it still lives
            # elsewhere, its next beat adds it back.
            await self._redis.srem(workers_key(self._prefix), owner)

    async def _owners_by_scan(self) -> set[str]:
        owners: set[str] = set()
        for queue in self._queues:
            keys = queue.protocol.keys
            prefix = keys.processing("")
            async for key in self._redis.scan_iter(match=keys.processing_pattern, count=1000):
                name = key.decode() if isinstance(key, bytes) else str(key)
                owners.add(name[len(prefix) :])
        return owners
