"""The producer API: `Producer(url).push("echo", "hi")` and its async twin.

Both build envelopes the same way (`producer.envelope`) and push in the same batches
(`plan_batches`); only the I/O differs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio

from producer.connection import DEFAULT_REDIS_URL, async_client, sync_client
from producer.envelope import JobEnvelope, build_envelope, stamp
from producer.errors import PartialPush
from producer.keys import DEFAULT_PREFIX, DEFAULT_QUEUE, QueueKeys
from producer.records import decode_record

DEFAULT_BATCH_SIZE = 1000

ProgressCallback = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class Batch:
    """One LPUSH/RPUSH of several jobs; `ids` in the order the jobs will run."""

    key: str
    front: bool
    payloads: list[bytes]
    ids: list[str]


def plan_batches(
    envelopes: Iterable[JobEnvelope],
    keys: QueueKeys,
    *,
    front: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[Batch]:
    """Group jobs into pushes that keep their order.

    Workers take from the right. `LPUSH k a b c` leaves `c b a`, so `a` runs first: file order.
    `front` jobs go to the right with `RPUSH`, last job first (`RPUSH k c b`, `RPUSH k a`), so
    they too run in file order, ahead of everything already waiting; their ids come in the
    order they are pushed, which the callers turn back into file order.
    """
    payloads: list[bytes] = []
    ids: list[str] = []
    for envelope in reversed(list(envelopes)) if front else envelopes:
        stamp(envelope)
        payloads.append(envelope.to_json())
        ids.append(str(envelope.id))
        if len(payloads) >= batch_size:
            yield _batch(keys, front, payloads, ids)
            payloads, ids = [], []
    if payloads:
        yield _batch(keys, front, payloads, ids)


def _batch(keys: QueueKeys, front: bool, payloads: list[bytes], ids: list[str]) -> Batch:
    return Batch(keys.ready, front, payloads, ids)


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
        **kwargs: Any,
    ) -> str:
        """Push one job and return its id. Options start with `_` to leave room for kwargs."""
        envelope = build_envelope(
            task, args, kwargs, job_id=_id, max_attempts=_max_attempts, timeout=_timeout
        )
        return self.push_many([envelope], queue=_queue, front=_front)[0]

    def push_many(
        self,
        envelopes: Sequence[JobEnvelope],
        *,
        queue: str | None = None,
        front: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: ProgressCallback | None = None,
    ) -> list[str]:
        """Push validated envelopes in pipelined batches; return their ids in push order.

        Each round trip is one MULTI/EXEC of up to ten batches. Raises `PartialPush` (after
        the client's retries) naming what went in when Redis fails part-way.
        """
        keys = self.keys_for(queue)
        pushed: list[str] = []
        for group in _rounds(plan_batches(envelopes, keys, front=front, batch_size=batch_size)):
            pipe = self.redis.pipeline(transaction=True)
            for batch in group:
                (pipe.rpush if batch.front else pipe.lpush)(batch.key, *batch.payloads)
            try:
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
        **kwargs: Any,
    ) -> str:
        envelope = build_envelope(
            task, args, kwargs, job_id=_id, max_attempts=_max_attempts, timeout=_timeout
        )
        return (await self.push_many([envelope], queue=_queue, front=_front))[0]

    async def push_many(
        self,
        envelopes: Sequence[JobEnvelope],
        *,
        queue: str | None = None,
        front: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> list[str]:
        keys = self.keys_for(queue)
        pushed: list[str] = []
        for group in _rounds(plan_batches(envelopes, keys, front=front, batch_size=batch_size)):
            pipe = self.redis.pipeline(transaction=True)
            for batch in group:
                (pipe.rpush if batch.front else pipe.lpush)(batch.key, *batch.payloads)
            try:
                await pipe.execute()
            except redis.RedisError as exc:
                raise _partial(pushed, group, len(envelopes), front, exc) from exc
            for batch in group:
                pushed.extend(batch.ids)
        return pushed[::-1] if front else pushed

    async def status(self, job_id: str, *, queue: str | None = None) -> dict[str, Any] | None:
        raw = await self.redis.hgetall(self.keys_for(queue).job(job_id))
        return decode_record(raw) if raw else None

    async def close(self) -> None:
        await self.redis.aclose()

    async def __aenter__(self) -> AsyncProducer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
