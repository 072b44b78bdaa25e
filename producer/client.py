"""The producer API: `Producer(url).push("echo", "hi")` and its async twin.

Both build envelopes the same way (`producer.envelope`), push in the same batches
(`plan_batches`: `LPUSH`/`RPUSH` to the ready list, or `ZADD` to the delayed set) and wait
for outcomes with the same state (`producer.waiting`); only the I/O differs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import redis
import redis.asyncio

from producer.connection import DEFAULT_REDIS_URL, async_client, sync_client
from producer.envelope import JobEnvelope, build_envelope, stamp
from producer.errors import InvalidSchedule, PartialPush
from producer.keys import DEFAULT_PREFIX, DEFAULT_QUEUE, QueueKeys
from producer.records import decode_record
from producer.schedule import Schedule, make_schedule
from producer.waiting import Waiter

DEFAULT_BATCH_SIZE = 1000

ProgressCallback = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class Batch:
    """One LPUSH/RPUSH (or, with a `due_ms`, one ZADD) of several jobs; `ids` in the order
    the jobs are pushed."""

    key: str
    front: bool
    payloads: list[bytes]
    ids: list[str]
    due_ms: int | None = None  # delayed: the score of every job of the batch (epoch ms)


def plan_batches(
    envelopes: Iterable[JobEnvelope],
    keys: QueueKeys,
    *,
    front: bool = False,
    schedule: Schedule | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[Batch]:
    """Group jobs into pushes that keep their order.

    Workers take from the right. `LPUSH k a b c` leaves `c b a`, so `a` runs first: file order.
    `front` jobs go to the right with `RPUSH`, last job first (`RPUSH k c b`, `RPUSH k a`), so
    they too run in file order, ahead of everything already waiting; their ids come in the
    order they are pushed, which the callers turn back into file order.

    With a `schedule` the jobs go to the delayed set instead, scored by their due time, which
    is computed once per batch after its jobs are stamped: never earlier than the
    `enqueued_at` stamped here plus the delay. Jobs due at the same time start in no
    particular order.
    """
    if front and schedule is not None:
        raise InvalidSchedule("a delayed push cannot go to the front")
    payloads: list[bytes] = []
    ids: list[str] = []
    for envelope in reversed(list(envelopes)) if front else envelopes:
        stamp(envelope)
        payloads.append(envelope.to_json())
        ids.append(str(envelope.id))
        if len(payloads) >= batch_size:
            yield _batch(keys, front, schedule, payloads, ids)
            payloads, ids = [], []
    if payloads:
        yield _batch(keys, front, schedule, payloads, ids)


def _batch(
    keys: QueueKeys,
    front: bool,
    schedule: Schedule | None,
    payloads: list[bytes],
    ids: list[str],
) -> Batch:
    if schedule is None:
        return Batch(keys.ready, front, payloads, ids)
    return Batch(keys.delayed, False, payloads, ids, schedule.due_ms(time.time()))


AnyPipeline = redis.client.Pipeline | redis.asyncio.client.Pipeline
# A sync or an async pipeline, given back as it came.
PipelineT = TypeVar("PipelineT", redis.client.Pipeline, redis.asyncio.client.Pipeline)


def _send(target: AnyPipeline | redis.Redis | redis.asyncio.Redis, batch: Batch) -> Any:
    """The batch's command: queued on a pipeline, or sent by a client (which gives back the
    reply, or with an asyncio client an awaitable of it)."""
    if batch.due_ms is not None:
        # A sorted set holds a member once: byte-identical jobs (a file repeating a job with
        # its id and enqueued_at) are pushed once. Jobs stamped here always differ.
        return target.zadd(batch.key, dict.fromkeys(batch.payloads, batch.due_ms))
    if batch.front:
        return target.rpush(batch.key, *batch.payloads)
    return target.lpush(batch.key, *batch.payloads)


def _read_statuses(pipe: PipelineT, keys: QueueKeys, ids: Iterable[str]) -> PipelineT:
    """Queue a read of each job's status (sync or async pipeline: queuing is synchronous)."""
    for job_id in ids:
        pipe.hget(keys.job(job_id), "status")
    return pipe


def _read_records(pipe: PipelineT, keys: QueueKeys, ids: Iterable[str]) -> PipelineT:
    """Queue a read of each job's whole record."""
    for job_id in ids:
        pipe.hgetall(keys.job(job_id))
    return pipe


# Batches sent per pipeline round trip.
_BATCHES_PER_ROUND_TRIP = 10


def _rounds(batches: Iterable[Batch]) -> Iterator[list[Batch]]:
    group: list[Batch] = []
    for batch in batches:
        group.append(batch)
        if len(group) >= _BATCHES_PER_ROUND_TRIP:
            yield group
            group = []
    if group:
        yield group


def _partial(
    pushed: list[str], failed: list[Batch], total: int, front: bool, error: Exception
) -> PartialPush:
    uncertain = [job_id for batch in failed for job_id in batch.ids]
    in_order = pushed[::-1] if front else pushed
    remaining = total - len(pushed) - len(uncertain)
    return PartialPush(in_order, uncertain, remaining, f"{type(error).__name__}: {error}")


def _schedule_of_push(
    delay: float | timedelta | None, at: datetime | None, front: bool
) -> Schedule | None:
    return make_schedule(delay, at, front=front, names=("_delay", "_at", "_front"))


class _ProducerBase:
    def __init__(self, *, queue: str, prefix: str) -> None:
        self.queue = queue
        self.prefix = prefix
        self._keys = QueueKeys(queue, prefix)

    def keys_for(self, queue: str | None) -> QueueKeys:
        return self._keys if queue is None or queue == self.queue else QueueKeys(queue, self.prefix)


class Producer(_ProducerBase):
    """Pushes jobs to Redis from synchronous code."""

    def __init__(
        self,
        url: str = DEFAULT_REDIS_URL,
        *,
        queue: str = DEFAULT_QUEUE,
        prefix: str = DEFAULT_PREFIX,
        client: redis.Redis | None = None,
    ) -> None:
        super().__init__(queue=queue, prefix=prefix)
        self.redis = client if client is not None else sync_client(url)

    def push(
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
        **kwargs: Any,
    ) -> str:
        """Push one job and return its id. Options start with `_` to leave room for kwargs.

        `_delay` (seconds or a timedelta) or `_at` (an aware datetime) puts the job in the
        delayed set until it is due; neither goes with `_front`.
        """
        schedule = _schedule_of_push(_delay, _at, _front)
        envelope = build_envelope(
            task, args, kwargs, job_id=_id, max_attempts=_max_attempts, timeout=_timeout
        )
        return self._push([envelope], _queue, _front, schedule, DEFAULT_BATCH_SIZE, None)[0]

    def push_many(
        self,
        envelopes: Sequence[JobEnvelope],
        *,
        queue: str | None = None,
        front: bool = False,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: ProgressCallback | None = None,
    ) -> list[str]:
        """Push validated envelopes in pipelined batches; return their ids in push order.

        Each round trip is all or nothing: one batch's command, or a MULTI/EXEC of up to
        ten batches. Raises `PartialPush` (after the client's retries) naming what went in
        when Redis fails part-way. With `delay` (seconds or a timedelta, >= 0) or `at` (an
        aware datetime; one in the past is due at once) the jobs wait in the delayed set
        until they are due; `InvalidSchedule` for a negative delay, a naive `at`, both, or
        either with `front`.
        """
        schedule = make_schedule(delay, at, front=front)
        return self._push(envelopes, queue, front, schedule, batch_size, progress)

    def _push(
        self,
        envelopes: Sequence[JobEnvelope],
        queue: str | None,
        front: bool,
        schedule: Schedule | None,
        batch_size: int,
        progress: ProgressCallback | None,
    ) -> list[str]:
        keys = self.keys_for(queue)
        pushed: list[str] = []
        batches = plan_batches(
            envelopes, keys, front=front, schedule=schedule, batch_size=batch_size
        )
        for group in _rounds(batches):
            try:
                if len(group) == 1:  # one command is atomic by itself: no pipeline to build
                    _send(self.redis, group[0])
                else:  # several go in MULTI/EXEC, all or nothing
                    pipe = self.redis.pipeline(transaction=True)
                    for batch in group:
                        _send(pipe, batch)
                    pipe.execute()
            except redis.RedisError as exc:
                raise _partial(pushed, group, len(envelopes), front, exc) from exc
            for batch in group:
                pushed.extend(batch.ids)
                if progress is not None:
                    progress(len(batch.ids))
        return pushed[::-1] if front else pushed

    def status(self, job_id: str, *, queue: str | None = None) -> dict[str, Any] | None:
        """The job's record, or None when there is none (not started yet, or expired)."""
        raw = self.redis.hgetall(self.keys_for(queue).job(job_id))
        return decode_record(raw) if raw else None

    def wait(
        self,
        ids: Iterable[str],
        *,
        queue: str | None = None,
        timeout: float | timedelta | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Wait until every job's record is final (`succeeded` or `dead`); return the records.

        Polls the records of the pending jobs in pipelined batches, 20 ms apart at first,
        then up to 1 s apart. `timeout` (seconds; None waits for ever) ends the wait with
        `WaitTimeout`, a `TimeoutError` that says how many are pending and holds the records
        found so far. A job that is never pushed, or whose record expired, never finishes.
        """
        keys = self.keys_for(queue)
        waiter = Waiter(ids, timeout)
        while True:
            for chunk in waiter.chunks():
                pipe = _read_statuses(self.redis.pipeline(transaction=False), keys, chunk)
                final = waiter.final_ids(chunk, pipe.execute())
                if final:
                    pipe = _read_records(self.redis.pipeline(transaction=False), keys, final)
                    waiter.finish(final, pipe.execute())
            if waiter.done:
                return waiter.records
            time.sleep(waiter.next_pause())

    def close(self) -> None:
        self.redis.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncProducer(_ProducerBase):
    """Pushes jobs to Redis from asyncio code; the same API as `Producer`, awaited."""

    def __init__(
        self,
        url: str = DEFAULT_REDIS_URL,
        *,
        queue: str = DEFAULT_QUEUE,
        prefix: str = DEFAULT_PREFIX,
        client: redis.asyncio.Redis | None = None,
    ) -> None:
        super().__init__(queue=queue, prefix=prefix)
        self.redis = client if client is not None else async_client(url)

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
        **kwargs: Any,
    ) -> str:
        schedule = _schedule_of_push(_delay, _at, _front)
        envelope = build_envelope(
            task, args, kwargs, job_id=_id, max_attempts=_max_attempts, timeout=_timeout
        )
        return (await self._push([envelope], _queue, _front, schedule, DEFAULT_BATCH_SIZE))[0]

    async def push_many(
        self,
        envelopes: Sequence[JobEnvelope],
        *,
        queue: str | None = None,
        front: bool = False,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> list[str]:
        schedule = make_schedule(delay, at, front=front)
        return await self._push(envelopes, queue, front, schedule, batch_size)

    async def _push(
        self,
        envelopes: Sequence[JobEnvelope],
        queue: str | None,
        front: bool,
        schedule: Schedule | None,
        batch_size: int,
    ) -> list[str]:
        keys = self.keys_for(queue)
        pushed: list[str] = []
        batches = plan_batches(
            envelopes, keys, front=front, schedule=schedule, batch_size=batch_size
        )
        for group in _rounds(batches):
            try:
                if len(group) == 1:  # as in `Producer._push`
                    await _send(self.redis, group[0])
                else:
                    pipe = self.redis.pipeline(transaction=True)
                    for batch in group:
                        _send(pipe, batch)
                    await pipe.execute()
            except redis.RedisError as exc:
                raise _partial(pushed, group, len(envelopes), front, exc) from exc
            for batch in group:
                pushed.extend(batch.ids)
        return pushed[::-1] if front else pushed

    async def status(self, job_id: str, *, queue: str | None = None) -> dict[str, Any] | None:
        raw = await self.redis.hgetall(self.keys_for(queue).job(job_id))
        return decode_record(raw) if raw else None

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
        waiter = Waiter(ids, timeout)
        while True:
            for chunk in waiter.chunks():
                pipe = _read_statuses(self.redis.pipeline(transaction=False), keys, chunk)
                final = waiter.final_ids(chunk, await pipe.execute())
                if final:
                    pipe = _read_records(self.redis.pipeline(transaction=False), keys, final)
                    waiter.finish(final, await pipe.execute())
            if waiter.done:
                return waiter.records
            await asyncio.sleep(waiter.next_pause())

    async def close(self) -> None:
        await self.redis.aclose()

    async def __aenter__(self) -> AsyncProducer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
