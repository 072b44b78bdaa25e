"""The consumer thread: takes a slot, then takes a job from Redis, then hands it to the loop.

One thread per queue, each with its own blocking Redis connection. The slot (the worker's
concurrency cap) is taken before the pop, so no job leaves the ready list while the worker
has no room for it; the job's completion callback gives the slot back. `BLMOVE` moves the job
into this worker's processing list in the same step that takes it (a reliable pop), and its
timeout is how often the thread checks whether it should stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, cast

import orjson
import redis
import structlog
from redis.exceptions import NoScriptError, RedisError

from producer.connection import is_transient, needs_reconnect, sync_client
from producer.envelope import MAX_ID_LENGTH, new_job_id
from producer.errors import RedisUnavailable
from producer.keys import QueueKeys
from producer.scripts import (
    JobStart,
    MovedJobStarts,
    ScriptCall,
    SyncScripts,
    adopt_call,
    dead_call,
    requeue_call,
    start_call,
    start_popped_call,
    start_token,
    take_call,
)
from worker.errors import MalformedJob
from worker.heartbeat import HeartbeatThread
from worker.inflight import InFlight
from worker.job import ReceivedJob, RejectedJob, dead_entry, decode_job
from worker.loop_thread import EventLoopThread
from worker.metrics import WorkerMetrics
from worker.redis_health import ReconnectDelay, RedisHealth
from worker.registry import TaskRegistry
from worker.runner import JobRunner
from worker.settings import WorkerSettings

log = structlog.get_logger()

# Extra socket time beyond the blocking pop's own timeout before a connection counts as dead.
SOCKET_TIMEOUT_MARGIN = 5.0
# Most jobs taken in one round trip (when that many slots are free and jobs wait).
TAKE_BATCH = 50
# Most due delayed jobs promoted to the ready list in one round trip.
PROMOTE_BATCH = 500
# Redis reads a blocking timeout of 0 as "for ever".
MIN_BLOCK = 0.001
# Seconds a blocking pop ends before our liveness keys could lapse at the earliest.
POP_SAFETY_MARGIN = 0.2
# How often a consumer waiting for a free slot checks whether it should stop.
SLOT_WAIT = 0.25


@dataclass(frozen=True, slots=True)
class TakenJob:
    """A job moved into our processing list by a script call with this start token, and
    its attempt if that script counted its start already."""

    raw: bytes
    token: str
    started: tuple[str, int] | None = None  # (job id, attempt number)

    @classmethod
    def of_reply(cls, entry: bytes | list[Any], token: str, *, trusted: bool) -> TakenJob:
        """From a script's reply: the job's bytes, or [bytes, job id, attempt number]."""
        if isinstance(entry, bytes):
            return cls(entry, token)
        raw, job_id, attempt = entry
        return cls(raw, token, (job_id.decode(), int(attempt)) if trusted else None)


def held_job_id(raw: bytes) -> str:
    """The id in a held job's envelope, to find its record; "-" (no record) when it has no
    usable one (such a job's start was never counted by the script that moved it)."""
    try:
        job_id = orjson.loads(raw).get("id")
    except (orjson.JSONDecodeError, AttributeError):
        return "-"
    return job_id if isinstance(job_id, str) and 0 < len(job_id) <= MAX_ID_LENGTH else "-"


class ConsumerThread(threading.Thread):
    def __init__(
        self,
        keys: QueueKeys,
        *,
        settings: WorkerSettings,
        registry: TaskRegistry,
        slots: threading.BoundedSemaphore,
        stop: threading.Event,
        loop_thread: EventLoopThread,
        runner: JobRunner,
        inflight: InFlight,
        health: RedisHealth,
        heartbeat: HeartbeatThread,
        metrics: WorkerMetrics,
        burst: bool = False,
    ) -> None:
        super().__init__(name=f"coroq-consumer-{keys.queue}", daemon=True)
        self.keys = keys
        self._settings = settings
        self._registry = registry
        self._slots = slots
        self._stop_taking = stop
        self._loop_thread = loop_thread
        self._runner = runner
        self._inflight = inflight
        self._health = health
        self._heartbeat = heartbeat
        self._metrics = metrics
        self._burst = burst
        self._processing = keys.processing(settings.worker_id)
        self._redis: redis.Redis = sync_client(
            settings.redis_url,
            retries=0,  # failures come back here, where the reconnect loop handles them
            socket_timeout=settings.poll_timeout + SOCKET_TIMEOUT_MARGIN,
        )
        self._scripts = SyncScripts(self._redis)
        # In burst mode an empty queue ends the worker, so look again soon.
        self._block_timeout = min(settings.poll_timeout, 0.5) if burst else settings.poll_timeout
        self._client_id: int | None = None  # of our connection, for `wake`
        self._reconcile_needed = True  # a previous life of this id may have left jobs behind
        # The last blocking pop timed out: the queue was idle, so the next take only
        # promotes due delayed jobs (the pop that follows takes a job, if one came).
        self._idle = False
        # The last jobs came from a blocking pop (the queue had been empty).
        self._popped = False
        # Tokens of take or pop calls whose reply was lost: the jobs they moved into our
        # processing list, with their starts counted, are put back by the next take.
        self._lost_tokens: set[str] = set()
        # Begins the token of every start this thread records, so that the script sent
        # behind a blocking pop can tell a job it has started already from a new one.
        self._token_prefix = f"{new_job_id()[:16]}-"
        # Lets the take script and the one sent behind a blocking pop count the start of
        # the jobs they move, in the same round trip.
        self._moved_starts = MovedJobStarts.of(
            keys,
            worker_id=settings.worker_id,
            ttl=settings.result_ttl,
            max_payload_bytes=settings.max_payload_bytes,
            default_max_attempts=settings.default_max_attempts,
            task_max_attempts={name: registry.get(name).max_attempts for name in registry.names()},
        )

    def run(self) -> None:
        delay = ReconnectDelay()
        while self._take_slot():
            # More free slots mean a batch: one round trip takes up to that many jobs.
            slots = 1 + self._spare_slots(TAKE_BATCH - 1)
            taken = self._take_or_wait(delay, slots)
            if slots > len(taken):
                self._slots.release(slots - len(taken))  # one call: the lock is taken once
            if not taken:
                if self._burst and not self._stop_taking.is_set() and delay.failures == 0:
                    return  # the queue is empty
                continue
            if self._stop_taking.is_set():  # taken by a pop that was under way at the signal
                for job in taken:
                    self._slots.release()
                    self._give_back(job)
                break
            self._dispatch_batch(taken)
            if self._popped:
                # The job came to an idle worker: give up the GIL so that the loop thread,
                # woken by the hand-off, starts it now rather than once this thread blocks
                # in its next round trip (a fifth of a millisecond here).
                time.sleep(0)
        self._redis.close()

    def wake(self) -> None:
        """Cut short a blocking pop under way, so a shutdown need not wait for its timeout.

        CLIENT UNBLOCK (from another connection) ends the pop as if it had timed out: no job
        is taken. Where the command is not allowed, the pop ends by its own timeout.
        """
        client_id = self._client_id
        if client_id is None:
            return
        client = sync_client(self._settings.redis_url, retries=0, socket_timeout=2)
        try:
            client.client_unblock(client_id)
        except RedisError as exc:
            log.debug("consumer.wake_failed", queue=self.keys.queue, error=str(exc))
        finally:
            client.close()

    def _dispatch_batch(self, taken: list[TakenJob]) -> None:
        """Decode the jobs taken together, count the attempts that the scripts which took
        them did not count in one round trip, and hand each job to the event loop as its own
        coroutine."""
        jobs: list[ReceivedJob] = []
        for entry in taken:
            job = self._prepare_safely(entry.raw)
            if job is None:
                continue
            if entry.started is not None and entry.started[0] == job.id and job.stamped is None:
                job.attempt = entry.started[1]
            jobs.append(job)
        to_count = [job for job in jobs if job.attempt == 0]
        try:
            attempts = self._count_attempts(to_count, taken[0].token) if to_count else []
        except Exception as exc:
            for job in jobs:
                self._slots.release()
                if not isinstance(exc, RedisUnavailable):  # else: stopping during an outage
                    self._dead_letter_after_bug(job.raw, exc)
            if not isinstance(exc, RedisUnavailable):
                log.exception("consumer.dispatch_error", queue=self.keys.queue)
            return  # the jobs stay in the processing list
        for job, attempt in zip(to_count, attempts, strict=True):
            job.attempt = int(attempt)
        for job in jobs:
            if job.attempt == 0:
                # A pop whose reply came late: the job was recovered and taken elsewhere.
                self._slots.release()
                log.warning("job.not_held", job_id=job.id, task=job.task, queue=job.queue)
                continue
            future = self._loop_thread.submit(self._runner.run(job))
            self._inflight.add(job, future)
            future.add_done_callback(self._job_done)

    def _prepare_safely(self, raw: bytes) -> ReceivedJob | None:
        """The job to run; None when it was dead-lettered (or kept back), its slot freed."""
        try:
            return self._prepare(raw)
        except RedisUnavailable:
            return None  # stopping during an outage: the job stays in the processing list
        except Exception as exc:
            # A bug, not bad input (bad input is dead-lettered before this). Keep serving,
            # and keep the job visible: it goes to the dead list with the error.
            log.exception("consumer.dispatch_error", queue=self.keys.queue)
            self._dead_letter_after_bug(raw, exc)
            return None

    def _count_attempts(self, jobs: list[ReceivedJob], token: str) -> list[int]:
        """Count the start of jobs taken together, with the token of the call that took
        them: a job whose start that call counted already (its reply came too late to be
        trusted) is not counted twice."""
        starts = [
            JobStart(job.id, job.raw, job.task, job.max_attempts, job.envelope.enqueued_at)
            for job in jobs
        ]
        call = start_call(
            self.keys,
            starts,
            worker_id=self._settings.worker_id,
            started_at=time.time(),
            ttl=self._settings.result_ttl,
            token=token,
        )
        return cast("list[int]", self._run_script(call))

    def _take_slot(self) -> bool:
        """Wait for a free slot while it is safe to take a job; False once stopping."""
        while not self._stop_taking.is_set():
            if not self._slots.acquire(timeout=SLOT_WAIT):
                continue
            if self._stop_taking.is_set():  # the slot was freed by a job finishing in the drain
                self._slots.release()
                return False
            if self._heartbeat.fresh():
                return True
            # Our liveness keys may lapse: a job taken now could be recovered elsewhere.
            self._slots.release()
            self._stop_taking.wait(0.1)
        return False

    def _spare_slots(self, most: int) -> int:
        taken = 0
        while taken < most and self._slots.acquire(blocking=False):
            taken += 1
        return taken

    def _take_or_wait(self, delay: ReconnectDelay, slots: int) -> list[TakenJob]:
        """Take up to `slots` jobs; on a Redis error, log it, wait a backoff delay, take none."""
        try:
            taken = self._take(slots)
        except RedisError as exc:
            if is_transient(exc):
                self._outage(exc, where="consumer")
            else:  # e.g. WRONGTYPE: someone wrote a non-list at the key
                log.error("consumer.redis_error", queue=self.keys.queue, error=str(exc))
            self._reconcile_needed = True
            self._client_id = None  # the next connection has another
            self._stop_taking.wait(delay.next_delay())
            return []
        delay.reset()
        self._health.succeeded()
        return taken

    def _take(self, most: int) -> list[TakenJob]:
        """Jobs waiting now (due delayed jobs promoted first), else a blocking pop of one."""
        if self._reconcile_needed:
            self._return_unknown_jobs()
            self._reconcile_needed = False
        now_ms = int(time.time() * 1000)
        most = 0 if self._idle else most
        token = start_token(self._token_prefix)
        call = take_call(
            self.keys,
            self._settings.worker_id,
            now_ms,
            most,
            PROMOTE_BATCH,
            self._moved_starts,
            token,
        )
        lapses = self._heartbeat.lapses
        self._popped = False
        self._lost_tokens.add(token)  # until its reply is in
        next_due, *taken = cast("list[Any]", self._scripts.run(call))
        self._lost_tokens.discard(token)
        self._health.succeeded()  # now, not after a blocking pop of many seconds
        if taken:
            # A reply so late that our liveness keys may have lapsed meanwhile: the jobs may
            # have been recovered and run elsewhere, so the dispatch counts their starts again
            # with start.lua, which checks that we still hold them.
            trusted = self._heartbeat.unbroken_since(lapses)
            return [TakenJob.of_reply(entry, token, trusted=trusted) for entry in taken]
        # Nothing waits: block until a job is pushed, a delayed job falls due, or it is time
        # to check again (stop, and delayed jobs pushed by others meanwhile).
        # A pop must end before our liveness keys could lapse: a worker frozen (SIGSTOP, a VM
        # pause) with a pop still pending in Redis could be handed a job after its other
        # jobs were recovered, and keep it from the live workers.
        block = min(self._block_timeout, self._heartbeat.remaining_life() - POP_SAFETY_MARGIN)
        if block < MIN_BLOCK:
            return []
        if self._client_id is None:
            self._client_id = int(self._redis.client_id())
        if next_due >= 0:
            block = min(block, max(MIN_BLOCK, (next_due - now_ms) / 1000))
        return self._pop_and_start(block, token)

    def _pop_and_start(self, block: float, token: str) -> list[TakenJob]:
        """A blocking pop of one job, with the script that counts its start sent behind it
        in the same write (Redis runs it once the pop is served): one round trip, not two."""
        start = start_popped_call(
            self.keys,
            worker_id=self._settings.worker_id,
            token=token,
            token_prefix=self._token_prefix,
            starts=self._moved_starts,
        )
        pipe = self._redis.pipeline(transaction=False)
        pipe.blmove(
            self.keys.ready,
            self._processing,
            block,  # type: ignore[arg-type]  # Redis takes fractions
            "RIGHT",
            "LEFT",
        )
        self._scripts.queue_on(pipe, start)
        lapses = self._heartbeat.lapses
        self._lost_tokens.add(token)  # until its reply is in
        raw, started = pipe.execute(raise_on_error=False)
        self._lost_tokens.discard(token)
        if isinstance(raw, Exception):
            raise raw
        self._idle = raw is None
        self._popped = True
        if isinstance(started, NoScriptError):  # Redis restarted: the dispatch counts it
            self._scripts.load(start.script)
        elif isinstance(started, Exception):
            log.warning("consumer.start_script_failed", queue=self.keys.queue, error=str(started))
        elif started and raw is None:
            # Started a job no coroutine holds (left by a lost reply): put it back.
            self._reconcile_needed = True
        if raw is None:
            return []
        if not started or isinstance(started, Exception):
            return [TakenJob(cast("bytes", raw), token)]
        # As in `_take`, a reply that came too late is not trusted.
        trusted = self._heartbeat.unbroken_since(lapses)
        return [TakenJob.of_reply([raw, *started], token, trusted=trusted)]

    def _give_back(self, job: TakenJob) -> None:
        """Return a job taken but not started to the consuming end of the ready list, taking
        back the start its take counted."""
        call = requeue_call(
            self.keys,
            held_job_id(job.raw),
            worker_id=self._settings.worker_id,
            raw=job.raw,
            start_tokens=[job.token],
        )
        # Stopping during an outage: the job stays in the processing list.
        with contextlib.suppress(RedisUnavailable):
            self._run_script(call)

    def _return_unknown_jobs(self) -> None:
        """Put back jobs in our processing list that no coroutine holds.

        A take or pop whose reply was lost with the connection leaves its jobs there, their
        starts counted: those are taken back (the calls' tokens say which). So does an earlier
        process that used the same worker id. The requeue script only moves what is still in
        the list, so a job acknowledged meanwhile is left alone.
        """
        held = cast("list[bytes]", self._redis.lrange(self._processing, 0, -1))
        for raw in held:
            if not self._inflight.holds(raw):
                call = requeue_call(
                    self.keys,
                    held_job_id(raw),
                    worker_id=self._settings.worker_id,
                    raw=raw,
                    start_tokens=sorted(self._lost_tokens),
                )
                if self._scripts.run(call):
                    log.warning("consumer.job_returned", queue=self.keys.queue)
        self._lost_tokens.clear()

    def _prepare(self, raw: bytes) -> ReceivedJob | None:
        try:
            decoded = decode_job(raw, self.keys, self._registry, self._settings)
            if isinstance(decoded, RejectedJob):
                self._reject(decoded)
                self._slots.release()
                return None
            if decoded.stamped is not None:
                self._adopt(decoded, decoded.stamped)
        except Exception:
            self._slots.release()
            raise
        return decoded

    def _job_done(self, future: Future[Any]) -> None:
        # Runs on the loop thread when the job's coroutine has finished, cleanup included.
        job = self._inflight.remove(future)
        self._slots.release()
        error = None if future.cancelled() else future.exception()
        if error is not None and not isinstance(error, asyncio.CancelledError):
            # The runner could not record an outcome (a bug, or a Redis error that waiting
            # cannot cure): the job is still in our processing list. The next take puts such
            # jobs back in the ready list, so it runs again rather than wait for a restart.
            self._reconcile_needed = True
            log.error(
                "job.unrecorded",
                job_id=None if job is None else job.id,
                queue=self.keys.queue,
                error=f"{type(error).__name__}: {error}",
                detail="the job goes back to the ready list",
            )

    def _adopt(self, job: ReceivedJob, stamped: bytes) -> None:
        call = adopt_call(
            self.keys, worker_id=self._settings.worker_id, raw=job.raw, stamped=stamped
        )
        self._run_script(call)
        job.raw = stamped

    def _reject(self, job: RejectedJob) -> None:
        error = job.error
        entry = dead_entry(
            job_id=job.job_id,
            queue=self.keys.queue,
            task=job.task,
            reason=error.reason,
            error=str(error),
            traceback="",
            attempts=0,
            worker_id=self._settings.worker_id,
            raw=job.raw,
        )
        call = dead_call(
            self.keys,
            job.job_id,
            worker_id=self._settings.worker_id,
            raw=job.raw,
            entry_json=entry,
            reason=error.reason,
            error=str(error),
            traceback="",
            finished_at=time.time(),
            ttl=self._settings.result_ttl,
            attempt=None,
        )
        self._run_script(call)
        self._metrics.job_finished(self.keys.queue, job.task, "dead", None)
        log.error(
            "job.dead",
            job_id=job.job_id,
            task=job.task,
            queue=self.keys.queue,
            attempt=0,
            reason=error.reason,
            error=str(error),
            payload_bytes=len(job.raw),
        )

    def _dead_letter_after_bug(self, raw: bytes, error: Exception) -> None:
        problem = MalformedJob("worker_error", f"the worker could not dispatch it: {error!r}")
        try:
            self._reject(RejectedJob(raw, self.keys, new_job_id(), None, problem))
        except Exception:  # the job stays in the processing list, still visible there
            log.exception("consumer.dead_letter_failed", queue=self.keys.queue)

    def _outage(self, error: RedisError, *, where: str) -> None:
        self._health.failed(error, where=where)
        if needs_reconnect(error):  # the next command may reach the new primary
            self._redis.connection_pool.disconnect()

    def _run_script(self, call: ScriptCall) -> Any:
        """Run a script, waiting out a Redis outage until the worker stops."""
        delay = ReconnectDelay()
        while True:
            try:
                return self._scripts.run(call)
            except RedisError as exc:
                if not is_transient(exc):
                    raise
                self._outage(exc, where=f"consumer.{call.script}")
                if self._stop_taking.wait(delay.next_delay()):
                    raise RedisUnavailable(str(exc)) from exc
