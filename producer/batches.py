"""Pushing jobs in batches, shared by `Producer` and `AsyncProducer`.

Both build envelopes the same way (`producer.envelope`) and push in the same batches
(`plan_batches`: `LPUSH`/`RPUSH` to the ready list, or `ZADD` to the delayed set); only the
I/O differs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import redis
import redis.asyncio

from producer.envelope import JobEnvelope, stamp
from producer.errors import InvalidSchedule, PartialPush
from producer.keys import QueueKeys
from producer.schedule import Schedule, make_schedule

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


def send_batch(target: AnyPipeline | redis.Redis | redis.asyncio.Redis, batch: Batch) -> Any:
    """The batch's command: queued on a pipeline, or sent by a client (which gives back the
    reply, or with an asyncio client an awaitable of it)."""
    if batch.due_ms is not None:
        # A sorted set holds a member once: byte-identical jobs (a file repeating a job with
        # its id and enqueued_at) are pushed once. Jobs stamped here always differ.
        return target.zadd(batch.key, dict.fromkeys(batch.payloads, batch.due_ms))
    if batch.front:
        return target.rpush(batch.key, *batch.payloads)
    return target.lpush(batch.key, *batch.payloads)


# Batches sent per pipeline round trip.
_BATCHES_PER_ROUND_TRIP = 10


def rounds(batches: Iterable[Batch]) -> Iterator[list[Batch]]:
    group: list[Batch] = []
    for batch in batches:
        group.append(batch)
        if len(group) >= _BATCHES_PER_ROUND_TRIP:
            yield group
            group = []
    if group:
        yield group


def partial_push(
    pushed: list[str], failed: list[Batch], total: int, front: bool, error: Exception
) -> PartialPush:
    uncertain = [job_id for batch in failed for job_id in batch.ids]
    in_order = pushed[::-1] if front else pushed
    remaining = total - len(pushed) - len(uncertain)
    return PartialPush(in_order, uncertain, remaining, f"{type(error).__name__}: {error}")


def schedule_of_push(
    delay: float | timedelta | None, at: datetime | None, front: bool
) -> Schedule | None:
    return make_schedule(delay, at, front=front, names=("_delay", "_at", "_front"))


class ProducerBase:
    def __init__(self, *, queue: str, prefix: str) -> None:
        self.queue = queue
        self.prefix = prefix
        self._keys = QueueKeys(queue, prefix)

    def keys_for(self, queue: str | None) -> QueueKeys:
        return self._keys if queue is None or queue == self.queue else QueueKeys(queue, self.prefix)
