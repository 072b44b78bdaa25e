"""Running jobs on the event loop: start, attempt, timeout, handler, outcome.

`JobRunner.start` is the coroutine the consumer thread submits for each batch of jobs it took:
it counts their starts in one script call (on the loop's pipelined connection, so it shares a
round trip with other jobs' outcomes rather than hold up the next take), then runs each job as
a task of its own (`JobRunner.run`); `JobRunner.launch` runs jobs whose starts the consumer
counted itself. That binds the job's context for every log line, applies
the per-task limit and the timeout, calls the handler (`def` handlers in a thread pool, so they
never block the loop), and records the outcome (`worker.jobs.outcomes`). A job cancelled by
shutdown goes back to the front of its queue; one cancelled by a producer is recorded
`cancelled`.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import structlog

from producer.envelope import compact_json
from producer.errors import RedisUnavailable
from worker.context import JobInfo, set_current_job
from worker.errors import HandlerFailed, JobError, JobTimeout, ResultNotSerializable, WorkerLost
from worker.jobs.decode import ReceivedJob
from worker.jobs.outcomes import OutcomeStore
from worker.jobs.progress import ProgressHandle
from worker.jobs.protocol import CANCELLED_INSTEAD, Failure, Started
from worker.jobs.running import JobDone, RunningJob
from worker.jobs.throughput import ThroughputCounter
from worker.metrics import WorkerMetrics
from worker.registry import TaskSpec
from worker.retry import Backoff, GiveUp, decide
from worker.tasks.http_session import SharedHttpSession

if TYPE_CHECKING:  # imported only by a worker that traces its jobs
    from worker.tracing.spans import JobTracer

log = structlog.get_logger()

# How long a job cancelled by shutdown may spend putting itself back in the queue.
REQUEUE_GIVE_UP_AFTER = 5.0


class JobRunner:
    def __init__(
        self,
        store: OutcomeStore,
        executor: ThreadPoolExecutor,
        http: SharedHttpSession,
        backoff: Backoff,
        metrics: WorkerMetrics,
        throughput: ThroughputCounter | None = None,
        tracer: JobTracer | None = None,
    ) -> None:
        self._store = store
        self._tracer = tracer
        self._metrics = metrics
        self._executor = executor
        self._http = http
        self._backoff = backoff  # tasks may declare their own
        self._task_limits: dict[str, asyncio.Semaphore] = {}
        self.finished_total = 0  # jobs that succeeded or died here (read by the heartbeat)
        # The same, per queue and minute, for the queues' throughput history.
        self.throughput = throughput if throughput is not None else ThroughputCounter()

    async def start(
        self, batch: list[RunningJob], token: str, done: JobDone, group: int | None = None
    ) -> None:
        """Count the start of jobs taken together, then run each as its own task, which calls
        `done` when it ends. A job no longer held (recovered elsewhere while the reply of its
        take was on its way) is not run; nor is one whose start could not be counted. Both
        stay with `attempt` 0: ending their life here is the caller's, once this returns.
        A job whose attempts are used up is not run either: its task dead-letters it.
        `group`: how many jobs at most run on the worker meanwhile, when that is known."""
        this_task = asyncio.current_task()
        for entry in batch:
            entry.task = this_task  # so that a shutdown can cancel them meanwhile
        try:
            # Outages are waited out; a shutdown may cancel the wait (the jobs stay in the
            # processing list, for this worker's next life or a recovery).
            starts = await self._store.start(batch, token, group)
        except RedisUnavailable as exc:  # Redis refused the user (ACL): the worker stops
            log.warning("job.start_refused", queue=batch[0].job.queue, error=str(exc))
            return  # not started: the jobs stay in the processing list
        except Exception as exc:  # a bug or a reply no waiting cures: not the jobs' fault
            log.exception("job.start_failed", queue=batch[0].job.queue, jobs=len(batch))
            await self._reject_all(batch, exc)
            return
        self.launch(batch, starts, done)

    def launch(self, batch: list[RunningJob], starts: list[Started], done: JobDone) -> None:
        """Run each job of a batch whose start was counted (`starts`, in the batch's order) as
        a task of its own; log why each of the others was not started. On the loop's thread."""
        loop = asyncio.get_running_loop()
        for entry, found in zip(batch, starts, strict=True):
            if found.attempt == 0:
                self._not_started(entry.job, found)
                continue
            entry.attempt, entry.forgiven = abs(found.attempt), found.forgiven
            entry.used_up = found.attempt < 0
            entry.task = loop.create_task(self.run(entry))
            entry.task.add_done_callback(functools.partial(done, entry))

    def _not_started(self, job: ReceivedJob, found: Started) -> None:
        if found.cancelled:
            log.info("job.cancelled", job_id=job.id, task=job.task, queue=job.queue, started=False)
            self._metrics.job_finished(job.queue, job.task, "cancelled", None)
        elif found.put_back:
            log.info("job.put_back_paused", job_id=job.id, task=job.task, queue=job.queue)
        elif found.over_limit:
            # Waits in Redis for a permit or for its time: no slot, no attempt.
            log.debug("job.over_limit", job_id=job.id, task=job.task, queue=job.queue)
            if found.due_ms:
                self._store.promoter(job.queue).follow_until(found.due_ms)
        else:
            log.warning("job.not_held", job_id=job.id, task=job.task, queue=job.queue)

    async def _reject_all(self, batch: list[RunningJob], error: Exception) -> None:
        failure = Failure("worker_error", f"the worker could not start it: {error!r}", "")
        for entry in batch:
            try:
                if await self._store.reject(entry, failure):
                    self.throughput.failed(entry.job.queue)
            except Exception:  # the job stays in the processing list, visible there
                log.exception("job.dead_letter_failed", job_id=entry.job.id)

    async def run(self, running: RunningJob) -> None:
        running.task = asyncio.current_task()
        running.began = True  # from here, a producer's cancel cancels this task
        job = running.job
        # Every log line of this task (the handler's too) carries the job's context; the
        # task has a context of its own, so nothing needs undoing at the end.
        progress = ProgressHandle(asyncio.get_running_loop(), self._store.progress, running)
        span = None if self._tracer is None else self._tracer.begin(running)
        set_current_job(
            JobInfo(
                job.id,
                job.task,
                job.queue,
                running.attempt,
                job.max_attempts,
                progress,
                trace_id=None if span is None else span.trace_id,
                span_id=None if span is None else span.span_id,
            )
        )
        try:
            if running.cancel_requested or running.stop_requested:  # since its launch
                raise asyncio.CancelledError
            await self._run_attempt(running)
        except asyncio.CancelledError:
            if running.cancel_requested:
                # A producer cancelled it: the attempt ends here, recorded `cancelled`.
                this_task = asyncio.current_task()
                if this_task is not None:
                    this_task.uncancel()
                await self._settle_cancelled(running)
                return
            # Otherwise only shutdown cancels a job (timeouts are handled inside); whatever
            # step it was at, the job goes back to its queue if this worker holds it.
            await self._requeue_after_cancel(running)
            raise
        finally:
            progress.close()
            if span is not None:
                span.end(running)

    async def _run_attempt(self, running: RunningJob) -> None:
        self._http.install()
        job = running.job
        if running.used_up:
            # Only losses it was blamed for bring a job here (a recorded failure ends in the
            # dead list at max_attempts): it took its worker down while running alone, every
            # time its attempts allowed. Do not let it do so again.
            error = WorkerLost(running.attempt, running.forgiven, job.max_attempts)
            await self._give_up(running, error, None)
            return
        log.info("job.started", max_attempts=job.max_attempts)
        started = time.perf_counter()
        try:
            result_json = await self._execute(job)
        except JobError as error:
            await self._after_failure(running, error, _ms_since(started))
        else:
            await self._succeed(running, result_json, _ms_since(started))

    async def _execute(self, job: ReceivedJob) -> bytes:
        limit = self._task_limit(job.spec)
        if limit is None:
            result = await self._call_with_timeout(job)
        else:
            async with limit:
                result = await self._call_with_timeout(job)
        try:
            return compact_json(result)  # held until its outcome is written
        except TypeError as exc:
            raise ResultNotSerializable(
                f"the task's result is not JSON-serialisable: {exc}"
            ) from None

    async def _call_with_timeout(self, job: ReceivedJob) -> Any:
        timeout = asyncio.timeout(job.timeout)
        try:
            async with timeout:
                return await self._call_handler(job)
        except TimeoutError as exc:
            if timeout.expired():
                raise JobTimeout(job.timeout) from None
            raise HandlerFailed(f"{type(exc).__name__}: {exc}") from exc
        except asyncio.CancelledError as exc:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # a shutdown cancelled the job
            # The handler raised it without being cancelled: a failure like any other
            # (putting the job back would run it again at once, for ever).
            raise HandlerFailed("CancelledError raised by the task itself") from exc
        except BaseException as exc:  # SystemExit, KeyboardInterrupt from task code too:
            # they end the job, never the worker.
            raise HandlerFailed(f"{type(exc).__name__}: {exc}") from exc

    async def _call_handler(self, job: ReceivedJob) -> Any:
        args, kwargs = job.arguments.args, job.arguments.kwargs
        if job.spec.is_async:
            return await job.spec.function(*args, **kwargs)
        # run_in_executor does not carry contextvars over; copy them so the handler's
        # log lines keep job_id, task, queue and attempt.
        call = functools.partial(job.spec.function, *args, **kwargs)
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self._executor, context.run, call)

    def _task_limit(self, spec: TaskSpec) -> asyncio.Semaphore | None:
        """The semaphore of a task with a concurrency limit of its own, else None."""
        if spec.concurrency is None:
            return None
        semaphore = self._task_limits.get(spec.name)
        if semaphore is None:
            semaphore = self._task_limits[spec.name] = asyncio.Semaphore(spec.concurrency)
        return semaphore

    async def _succeed(self, running: RunningJob, result_json: bytes, duration_ms: float) -> None:
        job = running.job
        settled = await self._store.succeed(running, result_json)
        if settled == CANCELLED_INSTEAD:
            self._cancelled(running, duration_ms)
        elif settled:
            log.info("job.succeeded", duration_ms=duration_ms)
            self.finished_total += 1
            self.throughput.succeeded(job.queue)
            self._finished(running, "succeeded", duration_ms / 1000)
        else:
            log.warning("job.ack_lost", duration_ms=duration_ms, outcome="succeeded")

    async def _after_failure(
        self, running: RunningJob, error: JobError, duration_ms: float
    ) -> None:
        """Reschedule the job after a backoff, or send it to the dead list."""
        job = running.job
        running.error = error
        log.warning(
            "job.failed",
            reason=error.reason,
            error=str(error),
            duration_ms=duration_ms,
            exc_info=error.__cause__ if isinstance(error, HandlerFailed) else None,
        )
        backoff = job.spec.backoff or self._backoff
        decision = decide(error, running.held_attempt, job.max_attempts, backoff)
        if isinstance(decision, GiveUp):
            await self._give_up(running, error, duration_ms)
            return
        settled = await self._store.retry(running, error, decision.delay)
        if settled == CANCELLED_INSTEAD:
            self._cancelled(running, duration_ms)
        elif settled:
            log.info("job.retrying", reason=error.reason, delay_s=round(decision.delay, 3))
            self._finished(running, "retried", duration_ms / 1000)
        else:
            log.warning("job.ack_lost", outcome="retrying", reason=error.reason)

    async def _give_up(
        self, running: RunningJob, error: JobError, duration_ms: float | None
    ) -> None:
        job = running.job
        running.error = error
        settled = await self._store.dead(running, error)
        if settled == CANCELLED_INSTEAD:
            self._cancelled(running, duration_ms)
        elif settled:
            log.error("job.dead", reason=error.reason, error=str(error), attempts=running.attempt)
            self.finished_total += 1
            self.throughput.failed(job.queue)
            self._finished(running, "dead", None if duration_ms is None else duration_ms / 1000)
        else:
            log.warning("job.ack_lost", outcome="dead", reason=error.reason)

    async def _settle_cancelled(self, running: RunningJob) -> None:
        """Record a job cancelled by a producer while it ran (the ack script sees the request
        and records `cancelled`, dropping the result)."""
        try:
            settled = await self._store.succeed(running, b"null")
        except Exception as exc:  # noqa: BLE001 - the job stays in the processing list
            log.error("job.cancel_unrecorded", error=f"{type(exc).__name__}: {exc}")
            return
        if settled == CANCELLED_INSTEAD:
            self._cancelled(running, None)
        else:  # it had ended already (its outcome was written before the request)
            log.info("job.cancel_too_late", held=bool(settled))

    def _cancelled(self, running: RunningJob, duration_ms: float | None) -> None:
        log.info("job.cancelled", started=True, duration_ms=duration_ms)
        self.finished_total += 1
        running.error = None  # its failure, if any, was not its end
        self._finished(running, "cancelled", None if duration_ms is None else duration_ms / 1000)

    def _finished(self, running: RunningJob, outcome: str, duration_s: float | None) -> None:
        running.outcome = outcome
        self._metrics.job_finished(running.job.queue, running.job.task, outcome, duration_s)

    async def _requeue_after_cancel(self, running: RunningJob) -> None:
        try:
            requeued = await self._store.requeue(running, give_up_after=REQUEUE_GIVE_UP_AFTER)
        except Exception as exc:  # noqa: BLE001 - the job stays in the processing list
            log.error("job.requeue_failed", error=f"{type(exc).__name__}: {exc}")
            return
        log.info("job.requeued", held=requeued)
        if requeued:
            self._finished(running, "requeued", None)


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
