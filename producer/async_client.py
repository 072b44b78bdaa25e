"""The producer API for asyncio code: `await AsyncProducer(url).push("echo", "hi")`, and
jobs as asyncio futures (`submit`, `job`; docs/futures.md).

Pushing is shared with `Producer` (`producer.batches`); waiting on jobs goes through the
producer's completion listener (`producer.completions`), started on first use.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Coroutine, Generator, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

import redis
import redis.asyncio
import structlog

from producer.batches import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BATCHES_PER_ROUND,
    DEFAULT_DURABLE_TIMEOUT,
    ProducerBase,
    not_replicated,
    partial_push,
    plan_batches,
    plan_push,
    rounds,
    send_batch,
    wait_for_replica,
)
from producer.cancelling import Cancelled, cancel_steps
from producer.completions import CompletionListener, WaitForAll
from producer.connection import DEFAULT_REDIS_URL, async_client, is_cluster_client
from producer.envelope import JobEnvelope
from producer.errors import DurableUnsupported
from producer.futures import AsyncJob, callbacks_of
from producer.groups import Call, Group, plan_group
from producer.keys import DEFAULT_PREFIX, DEFAULT_QUEUE, QueueKeys
from producer.records import decode_record
from producer.schedule import Schedule, make_schedule
from producer.scripts import PRODUCER_SCRIPTS, AsyncScripts, ScriptCall
from producer.settling import settle_steps
from producer.steps import (
    Pause,
    ReadDelayed,
    ReadFields,
    ReadList,
    ReadReady,
    ReadSetSample,
    Step,
)
from producer.unique_tasks import UniqueTask

log = structlog.get_logger()

T = TypeVar("T")


class AsyncProducer(ProducerBase):
    """Pushes jobs to Redis from asyncio code; the same API as `Producer`, awaited."""

    def __init__(
        self,
        url: str = DEFAULT_REDIS_URL,
        *,
        queue: str = DEFAULT_QUEUE,
        prefix: str = DEFAULT_PREFIX,
        client: redis.asyncio.Redis | None = None,
        durable_timeout: float = DEFAULT_DURABLE_TIMEOUT,
    ) -> None:
        super().__init__(queue=queue, prefix=prefix, durable_timeout=durable_timeout)
        self.redis = client if client is not None else async_client(url, max_connections=32)
        self._listener: CompletionListener | None = None
        self._background: set[asyncio.Future[None]] = set()

    async def push(
        self,
        task: str,
        *args: Any,
        _queue: str | None = None,
        _id: str | None = None,
        _max_attempts: int | None = None,
        _timeout: float | None = None,
        _front: bool = False,
        _delay: float | timedelta | None = None,
        _at: datetime | None = None,
        _after: Any = None,
        _unique: str | None = None,
        _unique_ttl: float | None = None,
        _durable: bool = False,
        **kwargs: Any,
    ) -> str:
        plan = plan_push(
            task, args, kwargs, self.keys_for(_queue), job_id=_id, max_attempts=_max_attempts,
            timeout=_timeout, front=_front, delay=_delay, at=_at, after=_after, unique=_unique,
            durable=_durable,
        )  # fmt: skip
        if plan.hold is not None:
            await self._run(plan.hold, plan.keys)
            return plan.job_id
        pushed = await self._push(
            [plan.envelope],
            _queue,
            _front,
            plan.schedule,
            DEFAULT_BATCH_SIZE,
            unique_ttl=_unique_ttl,
            durable=_durable,
            traced=True,  # build_envelope stamped the caller's trace context
        )
        return pushed[0]

    async def push_many(
        self,
        envelopes: Sequence[JobEnvelope],
        *,
        queue: str | None = None,
        front: bool = False,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        durable: bool = False,
    ) -> list[str]:
        schedule = make_schedule(delay, at, front=front)
        return await self._push(envelopes, queue, front, schedule, batch_size, durable=durable)

    async def _push(
        self,
        envelopes: Sequence[JobEnvelope],
        queue: str | None,
        front: bool,
        schedule: Schedule | None,
        batch_size: int,
        *,
        unique_ttl: float | None = None,
        durable: bool = False,
        traced: bool = False,
    ) -> list[str]:
        keys = self.keys_for(queue)
        if durable and is_cluster_client(self.redis):
            raise DurableUnsupported(
                "durable pushes are not available on a Redis Cluster (its WAIT cannot reach "
                "the shard of the queue); use Sentinel or a primary with replicas"
            )
        pushed: list[str] = []
        batches = plan_batches(
            envelopes,
            keys,
            front=front,
            schedule=schedule,
            batch_size=batch_size,
            unique_ttl=unique_ttl,
            traced=traced,
            unique_tasks=await self._declared_unique(keys),
        )
        for group in rounds(batches, 1 if durable else DEFAULT_BATCHES_PER_ROUND):
            try:
                if durable:  # as in `Producer._push`
                    pipe = self.redis.pipeline(transaction=False)
                    send_batch(pipe, group[0])
                    wait_for_replica(pipe, self.durable_timeout)
                    reply, replicas = await pipe.execute()
                    replies = [reply]
                elif len(group) == 1:  # as in `Producer._push`
                    replies = [await send_batch(self.redis, group[0])]
                else:
                    pipe = self.redis.pipeline(transaction=True)
                    for batch in group:
                        send_batch(pipe, batch)
                    replies = await pipe.execute()
            except redis.RedisError as exc:
                raise partial_push(pushed, group, len(envelopes), front, exc) from exc
            if durable and replicas < 1:
                raise not_replicated(pushed, group[0], len(envelopes), front, self.durable_timeout)
            for batch, reply in zip(group, replies, strict=True):
                pushed.extend(batch.pushed_ids(reply))
        return pushed[::-1] if front else pushed

    async def _declared_unique(self, keys: QueueKeys) -> dict[str, UniqueTask]:
        """`Producer._declared_unique`, awaited."""
        catalogs = self._unique_tasks
        if catalogs.due(keys.unique_tasks):
            reply = await self.redis.hgetall(keys.unique_tasks)
            return catalogs.store(keys.unique_tasks, reply)
        return catalogs.get(keys.unique_tasks)

    async def pause(self, queue: str | None = None) -> bool:
        """`Producer.pause`, awaited."""
        keys = self.keys_for(queue)
        return bool(await self.redis.set(keys.paused, repr(time.time()), nx=True))

    async def resume(self, queue: str | None = None) -> bool:
        """`Producer.resume`, awaited."""
        return bool(await self.redis.delete(self.keys_for(queue).paused))

    async def is_paused(self, queue: str | None = None) -> bool:
        return bool(await self.redis.exists(self.keys_for(queue).paused))

    async def status(self, job_id: str, *, queue: str | None = None) -> dict[str, Any] | None:
        record = decode_record(await self.redis.hgetall(self.keys_for(queue).job(job_id)))
        return record or None  # (a record holding only a waiting producer's mark is none)

    async def wait(
        self,
        ids: Iterable[str],
        *,
        queue: str | None = None,
        # The twin of `Producer.wait(timeout=)`; an `asyncio.timeout` around the call would
        # lose the records found so far, which `WaitTimeout` carries.
        timeout: float | timedelta | None = None,  # noqa: ASYNC109
    ) -> dict[str, dict[str, Any]]:
        """`Producer.wait`, awaited: the final record of each job, or `WaitTimeout`."""
        keys = self.keys_for(queue)
        wait = WaitForAll(ids, timeout, asyncio.Event())
        if not wait.deliveries:  # nothing to wait on
            return {}
        listener = self._completions()
        await listener.watch(keys, wait.deliveries)
        try:
            await asyncio.wait_for(wait.event.wait(), wait.timeout)
        except TimeoutError:
            for job_id, deliver in wait.deliveries.items():
                listener.forget(keys.queue, job_id, deliver)
            raise wait.timed_out() from None
        return wait.result()

    async def submit(
        self,
        task: str,
        *args: Any,
        _queue: str | None = None,
        _id: str | None = None,
        _max_attempts: int | None = None,
        _timeout: float | None = None,
        _front: bool = False,
        _delay: float | timedelta | None = None,
        _at: datetime | None = None,
        _after: Any = None,
        _unique: str | None = None,
        _unique_ttl: float | None = None,
        _durable: bool = False,
        **kwargs: Any,
    ) -> AsyncJob:
        """`push`, returning the job's future (an `asyncio.Future`): its result once the job
        succeeds, `JobFailed` once it is dead; cancelled when the job is. Returns once Redis
        knows the producer waits on it."""
        job_id = await self.push(
            task,
            *args,
            _queue=_queue,
            _id=_id,
            _max_attempts=_max_attempts,
            _timeout=_timeout,
            _front=_front,
            _delay=_delay,
            _at=_at,
            _after=_after,
            _unique=_unique,
            _unique_ttl=_unique_ttl,
            _durable=_durable,
            **kwargs,
        )
        keys = self.keys_for(_queue)
        job = self._new_job(job_id, keys.queue, pushed=True)
        await self._completions().watch(keys, *callbacks_of([job]))
        return job

    async def group(
        self, calls: Sequence[Call], *, then: Call, queue: str | None = None
    ) -> Group[AsyncJob]:
        """Push `calls` as a group (docs/futures.md#groups): once every member has a final
        status, the callback `then` is pushed, exactly once, with the members' outcomes as
        `results`. All or nothing: the group is written in one MULTI/EXEC. Returns the futures
        of the members and of the callback; `InvalidJob` (nothing pushed) for bad input."""
        keys = self.keys_for(queue)
        plan = plan_group(calls, then, keys)
        await self._run(plan.steps(), keys)
        members = [self._new_job(job_id, keys.queue, pushed=True) for job_id in plan.member_ids]
        callback = self._new_job(plan.callback_id, keys.queue, pushed=True)
        jobs = [*members, callback]
        await self._completions().watch(keys, *callbacks_of(jobs))
        return Group(plan.group_id, members, callback)

    def job(self, job_id: str, *, queue: str | None = None) -> AsyncJob:
        """The future of a job pushed by anyone (any producer, any language), by its id.
        Call it in a coroutine: the wait starts in the background on the running loop."""
        keys = self.keys_for(queue)
        job = self._new_job(job_id, keys.queue)
        self._in_background(self._completions().watch(keys, *callbacks_of([job])))
        return job

    async def cancel(self, job_id: str, *, queue: str | None = None) -> Cancelled:
        """`Producer.cancel`, awaited."""
        keys = self.keys_for(queue)
        return await self._run(cancel_steps(keys, job_id), keys)

    async def settle_dependents(self, *, queue: str | None = None) -> int:
        """Settle the jobs held for jobs that have ended (docs/futures.md#dependencies):
        workers do it on their own; returns how many ended jobs were settled here."""
        keys = self.keys_for(queue)
        return await self._run(settle_steps(keys), keys)

    async def _run(self, steps: Generator[Step, Any, T], keys: QueueKeys) -> T:
        """Run the steps of work written once for both producers (`producer.steps`)."""
        reply: Any = None
        try:
            while True:
                step = steps.send(reply)
                if isinstance(step, ScriptCall):
                    reply = await self._scripts.run(step)
                elif isinstance(step, ReadFields):
                    pipe = self.redis.pipeline(transaction=False)
                    for record in step.records:
                        pipe.hmget(record, step.fields)
                    reply = await pipe.execute()
                elif isinstance(step, ReadReady):
                    reply = await self.redis.lrange(keys.ready, step.start, step.stop)
                elif isinstance(step, ReadDelayed):
                    reply = await self.redis.zrange(keys.delayed, step.start, step.stop)
                elif isinstance(step, ReadList):
                    reply = await self.redis.lrange(step.key, 0, -1)
                elif isinstance(step, Pause):
                    await asyncio.sleep(step.seconds)
                    reply = None
                elif isinstance(step, ReadSetSample):
                    reply = await self.redis.srandmember(step.key, step.count)
                else:
                    pipe = self.redis.pipeline(transaction=True)
                    for method, args, kwargs in step.commands:
                        getattr(pipe, method)(*args, **kwargs)
                    reply = await pipe.execute()
        except StopIteration as done:
            return cast("T", done.value)

    @functools.cached_property
    def _scripts(self) -> AsyncScripts:
        return AsyncScripts(self.redis, PRODUCER_SCRIPTS)

    def _new_job(self, job_id: str, queue: str, *, pushed: bool = False) -> AsyncJob:
        loop = asyncio.get_running_loop()
        job = AsyncJob(job_id, queue, self._cancel_in_background, loop=loop)
        job.pushed = pushed
        return job

    def _cancel_in_background(self, job_id: str, queue: str) -> None:
        self._in_background(self._cancel_quietly(job_id, queue))

    async def _cancel_quietly(self, job_id: str, queue: str) -> None:
        try:
            await self.cancel(job_id, queue=queue)
        except redis.RedisError as exc:
            log.error("producer.cancel_failed", job_id=job_id, queue=queue, error=str(exc))

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        # A failed watch has already failed its job's future; nothing more to report.
        task.add_done_callback(lambda done: done.cancelled() or done.exception())

    def _completions(self) -> CompletionListener:
        if self._listener is None:
            self._listener = CompletionListener(self.redis, self.prefix)
        return self._listener

    async def close(self) -> None:
        """Close the connections; waits still pending end with `ProducerClosed` (the jobs go
        on; cancel them explicitly if they should not)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._listener is not None:
            await self._listener.close()
        await self.redis.aclose()

    async def __aenter__(self) -> AsyncProducer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
