"""Learning that jobs have ended, pushed by Redis rather than polled (docs/futures.md).

A producer that waits on jobs keeps one pub/sub connection, subscribed by pattern to the
`done` channel of every queue (`coroq:{*}:done`). It marks the record of each job it waits on
`watched` (producer/lua/watch.lua), and the worker's script that records a job's final status
publishes the job's id on its queue's channel when the record is so marked. On a message the
listener reads the record and hands it to whoever waits on that job.

Nothing is lost while the connection is down: each (re)subscription, redis-py's own reconnects
included, is followed by a new reading of the records of every job still waited on, and a job
that ended meanwhile is found final there. While jobs run, waiting on them costs no command at
all, however many they are (redis-py pings an idle connection every 30 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any, Generic, Protocol, TypeVar

import redis
import redis.asyncio
import structlog

from producer.errors import ProducerClosed, RedisUnavailable, WaitTimeout
from producer.keys import QueueKeys, done_channels_pattern, queue_of_done_channel
from producer.records import decode_record
from producer.schedule import delay_seconds
from producer.scripts import PRODUCER_SCRIPTS, PipelinedScripts, watch_call
from producer.statuses import FINAL_STATUSES

log = structlog.get_logger()

# Called once: with the job's final record, or with the error that ended the wait without one
# (the producer was closed; Redis refused the marking).
Deliver = Callable[[dict[str, Any] | BaseException], None]
# Called with the record of a job still running that reported progress.
Progressed = Callable[[dict[str, Any]], None]

# Jobs marked, or records read, per script call or pipeline.
CHUNK = 1000
# TTL of a record the marking creates (the job has not started yet; its start sets the
# worker's own TTL): long enough for any queue to reach the job.
WATCH_TTL = 7 * 24 * 3600
# How long a wait may take to be subscribed before Redis is called unreachable.
SUBSCRIBE_WITHIN = 15.0
FIRST_PAUSE = 0.05
LONGEST_PAUSE = 2.0
# Redis errors that say the connection, not the request, failed: marking is tried again.
CONNECTION_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


def as_text(value: bytes | str) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


class Waiters:
    """Who waits on which job, and the queues' keys: the state of a listener, without I/O.
    (Locked: the threaded listener finishes jobs in its thread while callers add waits.)"""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._by_job: dict[tuple[str, str], list[Deliver]] = {}
        self._progress: dict[tuple[str, str], list[Progressed]] = {}
        self._keys: dict[str, QueueKeys] = {}
        self._lock = threading.Lock()

    def add(
        self,
        keys: QueueKeys,
        deliveries: Mapping[str, Deliver],
        progress: Mapping[str, Progressed] | None = None,
    ) -> None:
        with self._lock:
            self._keys.setdefault(keys.queue, keys)
            for job_id, deliver in deliveries.items():
                self._by_job.setdefault((keys.queue, job_id), []).append(deliver)
            for job_id, progressed in (progress or {}).items():
                self._progress.setdefault((keys.queue, job_id), []).append(progressed)

    def remove(self, queue: str, job_id: str, deliver: Deliver) -> None:
        with self._lock:
            waiting = self._by_job.get((queue, job_id))
            if waiting is not None and deliver in waiting:
                waiting.remove(deliver)
                if not waiting:
                    del self._by_job[(queue, job_id)]

    def keys(self, queue: str) -> QueueKeys:
        return self._keys[queue]

    def announced(self, channel: str, job_id: str) -> tuple[str, str] | None:
        """(queue, job id) of a message on a `done` channel when this producer waits on it."""
        queue = queue_of_done_channel(channel, self.prefix)
        if queue is None:
            return None
        with self._lock:
            return (queue, job_id) if (queue, job_id) in self._by_job else None

    def by_queue(self) -> dict[str, list[str]]:
        with self._lock:
            queues: dict[str, list[str]] = {}
            for queue, job_id in self._by_job:
                queues.setdefault(queue, []).append(job_id)
            return queues

    def __len__(self) -> int:
        return len(self._by_job)

    def finish_if_final(self, queue: str, job_id: str, raw: Mapping[Any, Any] | list[Any]) -> None:
        """Hand the record (as HGETALL gave it, or a script's flat list) to everyone waiting on
        the job, once, when it is final."""
        if isinstance(raw, list):
            raw = dict(zip(raw[::2], raw[1::2], strict=True))
        record = decode_record(raw) if raw else {}
        if record.get("status") in FINAL_STATUSES:
            self._deliver(queue, job_id, record)
        elif "progress" in record:
            with self._lock:
                listeners = list(self._progress.get((queue, job_id), ()))
            for progressed in listeners:
                progressed(record)

    def fail(self, queue: str, job_ids: list[str], error: BaseException) -> None:
        for job_id in job_ids:
            self._deliver(queue, job_id, error)

    def fail_all(self, error: BaseException) -> None:
        for queue, job_ids in self.by_queue().items():
            self.fail(queue, job_ids, error)

    def _deliver(self, queue: str, job_id: str, outcome: dict[str, Any] | BaseException) -> None:
        with self._lock:
            waiting = self._by_job.pop((queue, job_id), [])
            self._progress.pop((queue, job_id), None)
        for deliver in waiting:
            try:
                deliver(outcome)
            except Exception:
                log.exception("producer.deliver_failed", job_id=job_id, queue=queue)


class _Event(Protocol):
    def set(self) -> None: ...


EventT = TypeVar("EventT", bound=_Event)


class WaitForAll(Generic[EventT]):
    """One `wait(ids)`: a delivery per job, the final records found, and an event (threading
    or asyncio) set once every job is final, or the wait failed."""

    def __init__(
        self, ids: Iterable[str], timeout: float | timedelta | None, event: EventT
    ) -> None:
        self.order = list(dict.fromkeys(ids))  # duplicates waited for once
        self.pending = set(self.order)
        self.timeout = None if timeout is None else delay_seconds(timeout, name="timeout")
        self.records: dict[str, dict[str, Any]] = {}
        self.error: BaseException | None = None
        self.event = event
        self.deliveries: dict[str, Deliver] = {
            job_id: functools.partial(self._deliver, job_id) for job_id in self.order
        }
        if not self.order:
            event.set()

    def _deliver(self, job_id: str, outcome: dict[str, Any] | BaseException) -> None:
        if isinstance(outcome, BaseException):
            self.error = outcome
        else:
            self.records[job_id] = outcome
            self.pending.discard(job_id)
        if self.error is not None or not self.pending:
            self.event.set()

    def result(self) -> dict[str, dict[str, Any]]:
        if self.error is not None:
            raise self.error
        return {job_id: self.records[job_id] for job_id in self.order}

    def timed_out(self) -> WaitTimeout:
        found = {job_id: self.records[job_id] for job_id in self.order if job_id in self.records}
        pending = [job_id for job_id in self.order if job_id in self.pending]
        return WaitTimeout(found, pending, self.timeout or 0.0)


class CompletionListener:
    """One asyncio producer's listener, on its client (and the loop that client runs on)."""

    def __init__(self, client: redis.asyncio.Redis, prefix: str) -> None:
        self._client = client
        self._scripts = PipelinedScripts(client, PRODUCER_SCRIPTS)
        self._waiters = Waiters(prefix)
        self._subscribed = asyncio.Event()
        self._listening: asyncio.Task[None] | None = None
        self._to_read: dict[tuple[str, str], None] = {}
        self._reading: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def waiting(self) -> int:
        """How many jobs are waited on."""
        return len(self._waiters)

    async def watch(
        self,
        keys: QueueKeys,
        deliveries: Mapping[str, Deliver],
        progress: Mapping[str, Progressed] | None = None,
    ) -> None:
        """Call each job's `Deliver` with its record once the job is final (at once if it is
        already), and its `Progressed` (if any) each time it reports progress meanwhile.
        Returns once Redis knows of the wait: from then on no ending is missed."""
        if self._closed:
            raise RuntimeError("the producer is closed")
        self._waiters.add(keys, deliveries, progress)
        try:
            await self._listen()
            await self._mark(keys, list(deliveries))
        except (redis.RedisError, RedisUnavailable) as exc:
            self._waiters.fail(keys.queue, list(deliveries), exc)
            raise

    def forget(self, queue: str, job_id: str, deliver: Deliver) -> None:
        """Stop waiting (a wait that timed out): `deliver` will not be called."""
        self._waiters.remove(queue, job_id, deliver)

    async def _listen(self) -> None:
        if self._listening is None or self._listening.done():
            self._listening = asyncio.create_task(self._keep_listening(), name="coroq-listener")
        subscribed = asyncio.ensure_future(self._subscribed.wait())
        try:
            await asyncio.wait(
                {subscribed, self._listening},
                timeout=SUBSCRIBE_WITHIN,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            subscribed.cancel()
        if self._subscribed.is_set():
            return
        if self._listening.done():
            self._listening.result()  # raises what stopped it
        raise RedisUnavailable(
            f"could not subscribe to job completions within {SUBSCRIBE_WITHIN:g} s"
        )

    async def _keep_listening(self) -> None:
        pause = FIRST_PAUSE
        while not self._closed:
            pubsub = self._client.pubsub()
            try:
                await pubsub.psubscribe(done_channels_pattern(self._waiters.prefix))
                async for message in pubsub.listen():
                    if message["type"] == "psubscribe":
                        # Subscribed, for the first time or again after a reconnect (redis-py
                        # subscribes again by itself): what ended meanwhile is read now.
                        self._subscribed.set()
                        pause = FIRST_PAUSE
                        await self._read_again()
                    elif message["type"] == "pmessage":
                        self._on_done(as_text(message["channel"]), as_text(message["data"]))
            except CONNECTION_ERRORS as exc:
                log.warning("producer.listener_reconnecting", error=f"{type(exc).__name__}: {exc}")
            finally:
                self._subscribed.clear()
                await _close_quietly(pubsub)
            await asyncio.sleep(pause)
            pause = min(LONGEST_PAUSE, pause * 2)

    def _on_done(self, channel: str, job_id: str) -> None:
        job = self._waiters.announced(channel, job_id)
        if job is None:
            return  # a job another producer waits on
        self._to_read[job] = None
        if self._reading is None:
            self._reading = asyncio.create_task(self._read_records(), name="coroq-records")

    async def _read_records(self) -> None:
        """Read the records of the jobs announced, many per round trip."""
        try:
            while self._to_read:
                batch = list(self._to_read)[:CHUNK]
                for job in batch:
                    del self._to_read[job]
                pipe = self._client.pipeline(transaction=False)
                for queue, job_id in batch:
                    pipe.hgetall(self._waiters.keys(queue).job(job_id))
                try:
                    raws = await pipe.execute()
                except CONNECTION_ERRORS:
                    continue  # the listener's reconnect reads every waited-on record again
                for (queue, job_id), raw in zip(batch, raws, strict=True):
                    self._waiters.finish_if_final(queue, job_id, raw)
        finally:
            self._reading = None

    async def _read_again(self) -> None:
        for queue, job_ids in self._waiters.by_queue().items():
            try:
                await self._mark(self._waiters.keys(queue), job_ids)
            except CONNECTION_ERRORS:
                return  # the listener reconnects, and reads them all again then
            except redis.RedisError as exc:
                log.error("producer.watch_failed", queue=queue, error=str(exc))
                self._waiters.fail(queue, job_ids, exc)

    async def _mark(self, keys: QueueKeys, job_ids: list[str]) -> None:
        for chunk in chunks(job_ids):
            records = await self._scripts.run(watch_call(keys, chunk, ttl=WATCH_TTL))
            for job_id, raw in zip(chunk, records, strict=True):
                if raw:
                    self._waiters.finish_if_final(keys.queue, job_id, raw)

    async def close(self) -> None:
        """Stop listening; whoever still waits gets `ProducerClosed`."""
        self._closed = True
        tasks = [task for task in (self._listening, self._reading) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._waiters.fail_all(ProducerClosed("the producer was closed while waiting"))


async def _close_quietly(pubsub: redis.asyncio.client.PubSub) -> None:
    with contextlib.suppress(redis.RedisError, OSError):
        await pubsub.aclose()


def chunks(items: list[str], size: int = CHUNK) -> list[list[str]]:
    return [items[start : start + size] for start in range(0, len(items), size)]
