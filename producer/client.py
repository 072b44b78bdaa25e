"""The producer API for synchronous code: `Producer(url).push("echo", "hi")`.

Pushing is shared with `AsyncProducer` (`producer.batches`); waiting on jobs goes through the
producer's completion listener (`producer.completions_thread`), started on first use.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Generator, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

import redis
import structlog

from producer.batches import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BATCHES_PER_ROUND,
    DEFAULT_DURABLE_TIMEOUT,
    ProducerBase,
    ProgressCallback,
    not_replicated,
    partial_push,
    plan_batches,
    plan_push,
    rounds,
    send_batch,
    wait_for_replica,
)
from producer.cancelling import Cancelled, cancel_steps
from producer.completions import WaitForAll
from producer.completions_thread import ThreadCompletionListener
from producer.connection import DEFAULT_REDIS_URL, is_cluster_client, sync_client
from producer.envelope import JobEnvelope
from producer.errors import DurableUnsupported
from producer.futures import Job, callbacks_of
from producer.groups import Call, Group, plan_group
from producer.keys import DEFAULT_PREFIX, DEFAULT_QUEUE, QueueKeys
from producer.records import decode_record
from producer.schedule import Schedule, make_schedule
from producer.scripts import PRODUCER_SCRIPTS, ScriptCall, SyncScripts
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

__all__ = ["DEFAULT_BATCH_SIZE", "Producer", "ProgressCallback", "plan_batches"]


class Producer(ProducerBase):
    """Pushes jobs to Redis from synchronous code."""

    def __init__(
        self,
        url: str = DEFAULT_REDIS_URL,
        *,
        queue: str = DEFAULT_QUEUE,
        prefix: str = DEFAULT_PREFIX,
        client: redis.Redis | None = None,
        durable_timeout: float = DEFAULT_DURABLE_TIMEOUT,
    ) -> None:
        super().__init__(queue=queue, prefix=prefix, durable_timeout=durable_timeout)
        self.redis = client if client is not None else sync_client(url)
        self._listener: ThreadCompletionListener | None = None

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
        _after: Any = None,
        _unique: str | None = None,
        _unique_ttl: float | None = None,
        _durable: bool = False,
        **kwargs: Any,
    ) -> str:
        """Push one job and return its id. Options start with `_` to leave room for kwargs.

        `_delay` (seconds or a timedelta) or `_at` (an aware datetime) puts the job in the
        delayed set until it is due; neither goes with `_front`. With `_durable`, it returns
        only once a replica has the job too (`NotReplicated` when none confirms within
        `durable_timeout`; docs/operations.md#durable-pushes).
        """
        plan = plan_push(
            task, args, kwargs, self.keys_for(_queue), job_id=_id, max_attempts=_max_attempts,
            timeout=_timeout, front=_front, delay=_delay, at=_at, after=_after, unique=_unique,
            durable=_durable,
        )  # fmt: skip
        if plan.hold is not None:
            self._run(plan.hold, plan.keys)
            return plan.job_id
        pushed = self._push(
            [plan.envelope],
            _queue,
            _front,
            plan.schedule,
            DEFAULT_BATCH_SIZE,
            None,
            unique_ttl=_unique_ttl,
            durable=_durable,
            traced=True,  # build_envelope stamped the caller's trace context
        )
        return pushed[0]

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
        durable: bool = False,
    ) -> list[str]:
        """Push validated envelopes in pipelined batches; return their ids in push order.
        With `durable`, each batch goes alone and counts as pushed only once a replica
        confirms it (`NotReplicated`, naming the jobs, when none does in time).

        Each round trip is all or nothing: one batch's command, or a MULTI/EXEC of up to
        ten batches. Raises `PartialPush` (after the client's retries) naming what went in
        when Redis fails part-way. With `delay` (seconds or a timedelta, >= 0) or `at` (an
        aware datetime; one in the past is due at once) the jobs wait in the delayed set
        until they are due; `InvalidSchedule` for a negative delay, a naive `at`, both, or
        either with `front`.
        """
        schedule = make_schedule(delay, at, front=front)
        return self._push(envelopes, queue, front, schedule, batch_size, progress, durable=durable)

    def _push(
        self,
        envelopes: Sequence[JobEnvelope],
        queue: str | None,
        front: bool,
        schedule: Schedule | None,
        batch_size: int,
        progress: ProgressCallback | None,
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
            unique_tasks=self._declared_unique(keys),
        )
        for group in rounds(batches, 1 if durable else DEFAULT_BATCHES_PER_ROUND):
            try:
                if durable:  # the batch, then WAIT on the same connection
                    pipe = self.redis.pipeline(transaction=False)
                    send_batch(pipe, group[0])
                    wait_for_replica(pipe, self.durable_timeout)
                    reply, replicas = pipe.execute()
                    replies = [reply]
                elif len(group) == 1:  # one command is atomic by itself: no pipeline to build
                    replies = [send_batch(self.redis, group[0])]
                else:  # several go in MULTI/EXEC, all or nothing
                    pipe = self.redis.pipeline(transaction=True)
                    for batch in group:
                        send_batch(pipe, batch)
                    replies = pipe.execute()
            except redis.RedisError as exc:
                raise partial_push(pushed, group, len(envelopes), front, exc) from exc
            if durable and replicas < 1:
                raise not_replicated(pushed, group[0], len(envelopes), front, self.durable_timeout)
            for batch, reply in zip(group, replies, strict=True):
                pushed.extend(batch.pushed_ids(reply))
                if progress is not None:
                    progress(len(batch.ids))
        return pushed[::-1] if front else pushed

    def pause(self, queue: str | None = None) -> bool:
        """Pause a queue (docs/scheduling.md#pause): its workers take nothing more within a
        second; jobs already running finish. It stays paused, across worker restarts, until
        `resume`. Pushing goes on. Returns False when it was paused already."""
        keys = self.keys_for(queue)
        return bool(self.redis.set(keys.paused, repr(time.time()), nx=True))

    def resume(self, queue: str | None = None) -> bool:
        """Resume a paused queue: its workers take from it again within a second. Returns
        False when it was not paused."""
        return bool(self.redis.delete(self.keys_for(queue).paused))

    def is_paused(self, queue: str | None = None) -> bool:
        return bool(self.redis.exists(self.keys_for(queue).paused))

    def status(self, job_id: str, *, queue: str | None = None) -> dict[str, Any] | None:
        """The job's record, or None when there is none (not started yet, or expired)."""
        record = decode_record(self.redis.hgetall(self.keys_for(queue).job(job_id)))
        return record or None  # (a record holding only a waiting producer's mark is none)

    def wait(
        self,
        ids: Iterable[str],
        *,
        queue: str | None = None,
        timeout: float | timedelta | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Wait until every job's record is final (`succeeded`, `dead` or `cancelled`); return
        the records.

        Completion is pushed (docs/futures.md#completion): the producer's listener hears of
        each job as its worker records it, whatever their number. `timeout` (seconds; None
        waits for ever) ends the wait with `WaitTimeout`, a `TimeoutError` that says how many
        are pending and holds the records found so far. A job that is never pushed, or whose
        record expired, never finishes.
        """
        keys = self.keys_for(queue)
        wait = WaitForAll(ids, timeout, threading.Event())
        if not wait.deliveries:  # nothing to wait on
            return {}
        listener = self._completions()
        listener.watch(keys, wait.deliveries)
        if not wait.event.wait(wait.timeout):
            for job_id, deliver in wait.deliveries.items():
                listener.forget(keys.queue, job_id, deliver)
            raise wait.timed_out()
        return wait.result()

    def submit(
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
    ) -> Job:
        """`push`, returning the job's future (`concurrent.futures.Future`): its result once
        the job succeeds, `JobFailed` once it is dead; cancelled when the job is."""
        job_id = self.push(
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
        job = self.job(job_id, queue=_queue)
        job.pushed = True
        return job

    def group(self, calls: Sequence[Call], *, then: Call, queue: str | None = None) -> Group[Job]:
        """`AsyncProducer.group` for synchronous code: the futures are `Job`s."""
        keys = self.keys_for(queue)
        plan = plan_group(calls, then, keys)
        self._run(plan.steps(), keys)
        members = [Job(job_id, keys.queue, self._cancel_quietly) for job_id in plan.member_ids]
        callback = Job(plan.callback_id, keys.queue, self._cancel_quietly)
        jobs = [*members, callback]
        for job in jobs:
            job.pushed = True
        self._completions().watch(keys, *callbacks_of(jobs))
        return Group(plan.group_id, members, callback)

    def job(self, job_id: str, *, queue: str | None = None) -> Job:
        """The future of a job pushed by anyone (any producer, any language), by its id."""
        keys = self.keys_for(queue)
        job = Job(job_id, keys.queue, self._cancel_quietly)
        self._completions().watch(keys, *callbacks_of([job]))
        return job

    def cancel(self, job_id: str, *, queue: str | None = None) -> Cancelled:
        """Cancel a job (docs/futures.md#cancel): one not started never runs; a running one
        is cancelled by its worker. Says what was done; a final job is left as it is."""
        keys = self.keys_for(queue)
        return self._run(cancel_steps(keys, job_id), keys)

    def _declared_unique(self, keys: QueueKeys) -> dict[str, UniqueTask]:
        """The queue's unique tasks, read again when what was read has aged."""
        catalogs = self._unique_tasks
        if catalogs.due(keys.unique_tasks):
            return catalogs.store(keys.unique_tasks, self.redis.hgetall(keys.unique_tasks))
        return catalogs.get(keys.unique_tasks)

    def settle_dependents(self, *, queue: str | None = None) -> int:
        """`AsyncProducer.settle_dependents` for synchronous code."""
        keys = self.keys_for(queue)
        return self._run(settle_steps(keys), keys)

    def _run(self, steps: Generator[Step, Any, T], keys: QueueKeys) -> T:
        """Run the steps of work written once for both producers (`producer.steps`)."""
        reply: Any = None
        try:
            while True:
                step = steps.send(reply)
                if isinstance(step, ScriptCall):
                    reply = self._scripts.run(step)
                elif isinstance(step, ReadFields):
                    pipe = self.redis.pipeline(transaction=False)
                    for record in step.records:
                        pipe.hmget(record, step.fields)
                    reply = pipe.execute()
                elif isinstance(step, ReadReady):
                    reply = self.redis.lrange(keys.ready, step.start, step.stop)
                elif isinstance(step, ReadDelayed):
                    reply = self.redis.zrange(keys.delayed, step.start, step.stop)
                elif isinstance(step, ReadList):
                    reply = self.redis.lrange(step.key, 0, -1)
                elif isinstance(step, Pause):
                    time.sleep(step.seconds)
                    reply = None
                elif isinstance(step, ReadSetSample):
                    reply = self.redis.srandmember(step.key, step.count)
                else:
                    pipe = self.redis.pipeline(transaction=True)
                    for method, args, kwargs in step.commands:
                        getattr(pipe, method)(*args, **kwargs)
                    reply = pipe.execute()
        except StopIteration as done:
            return cast("T", done.value)

    @functools.cached_property
    def _scripts(self) -> SyncScripts:
        return SyncScripts(self.redis, PRODUCER_SCRIPTS)

    def _cancel_quietly(self, job_id: str, queue: str) -> None:
        try:
            self.cancel(job_id, queue=queue)
        except redis.RedisError as exc:
            log.error("producer.cancel_failed", job_id=job_id, queue=queue, error=str(exc))

    def _completions(self) -> ThreadCompletionListener:
        if self._listener is None:
            self._listener = ThreadCompletionListener(self.redis, self.prefix)
        return self._listener

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        self.redis.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
