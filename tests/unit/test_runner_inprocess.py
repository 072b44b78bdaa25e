"""`JobRunner` in-process: one attempt on an asyncio loop, its outcome written by a real
`OutcomeStore` to the real Redis of the session (`AsyncQueue` over the pipelined scripts).

Each test puts a job in the worker's processing list and counts its start with start.lua, as
the consumer does, then awaits `JobRunner.run` and reads what Redis and the logs show.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from structlog.testing import capture_logs

from producer.connection import async_client
from producer.keys import QueueKeys
from producer.scripts import ScriptCall
from tests.unit.inprocess import (
    TRACKER,
    Tracker,
    counted_outcomes,
    dead_entries,
    events,
    job,
    make_settings,
    ready_ids,
    record,
    registry,
)
from worker import Backoff
from worker.jobs import runner as runner_module
from worker.jobs.decode import ReceivedJob, decode_job
from worker.jobs.outcomes import OutcomeStore
from worker.jobs.protocol import JobStart, QueueProtocol, Started, start_token, started
from worker.jobs.queues import AsyncQueue, pipelined_worker_scripts
from worker.jobs.runner import JobRunner
from worker.jobs.running import RunningJob, RunningJobs
from worker.jobs.slots import Slots
from worker.metrics import WorkerMetrics
from worker.redis_health import AsyncOutages, RedisHealth
from worker.settings import WorkerSettings
from worker.tasks.http_session import SharedHttpSession

pytestmark = pytest.mark.real_redis

REGISTRY = registry()


class FlakyAsyncQueue(AsyncQueue):
    """The real `AsyncQueue`; `faults[script]` says how its next calls of that script fail:
    "drop" (before it reaches Redis) or "lose" (it ran, its reply was lost), one per call."""

    def __init__(self, protocol: QueueProtocol, client: redis.asyncio.Redis) -> None:
        super().__init__(protocol, pipelined_worker_scripts(client, ""), client)
        self.faults: dict[str, list[str]] = {}
        self.calls: list[str] = []

    async def run(self, call: ScriptCall) -> Any:
        self.calls.append(call.script)
        pending = self.faults.get(call.script)
        fault = pending.pop(0) if pending else None
        if fault == "drop":
            raise redis.ConnectionError("Connection reset by peer (injected before the command)")
        result = await super().run(call)
        if fault == "lose":
            raise redis.ConnectionError("Connection reset by peer (injected: the reply was lost)")
        return result


@dataclass
class Harness:
    runner: JobRunner
    queue: FlakyAsyncQueue
    keys: QueueKeys
    settings: WorkerSettings
    metrics: WorkerMetrics
    sync: redis.Redis  # for the test's own reads and writes
    slots: Slots

    @property
    def processing(self) -> str:
        return self.queue.protocol.processing

    async def take(self, raw: bytes, *, earlier_attempts: int = 0) -> RunningJob:
        """Hold the job as a take would, and count its start; `earlier_attempts` are
        recorded as made before (by this or other workers)."""
        decoded = decode_job(raw, self.keys, REGISTRY, self.settings)
        assert isinstance(decoded, ReceivedJob), decoded
        self.sync.lpush(self.processing, raw)
        if earlier_attempts:
            self.sync.hset(self.keys.job(decoded.id), "attempts", earlier_attempts)
        start = JobStart(decoded.id, raw, decoded.task, decoded.max_attempts, None)
        call = self.queue.protocol.start([start], start_token("t-"), None)
        [found] = started(await self.queue.run(call))
        lease = self.slots.lease(0)
        assert lease is not None
        running = RunningJob(decoded, lease, abs(found.attempt), found.forgiven)
        running.used_up = found.attempt < 0
        return running

    def outcomes(self, outcome: str, task: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "coroq_jobs_total", {"queue": self.keys.queue, "task": task, "outcome": outcome}
        )
        return value or 0.0


@pytest.fixture
def tracker() -> Tracker:
    TRACKER.reset()
    return TRACKER


@pytest.fixture
def harness_on(
    redis_url: str, redis_client: redis.Redis, keys: QueueKeys, tracker: Tracker
) -> Callable[[], Any]:
    """`async with harness_on() as harness:` inside the test's event loop."""

    @asynccontextmanager
    async def make() -> AsyncIterator[Harness]:
        settings = make_settings(redis_url, [keys.queue])
        client = async_client(redis_url)
        health = RedisHealth(settings.redacted_redis_url)
        protocol = QueueProtocol(keys, settings.worker_id, settings.result_ttl)
        queue = FlakyAsyncQueue(protocol, client)
        store = OutcomeStore({keys.queue: queue}, AsyncOutages(client, health))
        executor = ThreadPoolExecutor(2, thread_name_prefix="test-sync")
        http = SharedHttpSession(2)
        metrics = WorkerMetrics(known_tasks=REGISTRY.names(), process_metrics=False)
        runner = JobRunner(store, executor, http, Backoff(10, 2, 10), metrics)
        try:
            yield Harness(runner, queue, keys, settings, metrics, redis_client, Slots(4))
        finally:
            await http.close()
            await client.aclose()
            executor.shutdown(wait=True)

    return make


def run(scenario: Callable[[], Any]) -> None:
    asyncio.run(scenario())


async def eventually(condition: Callable[[], Any]) -> bool:
    """Whether `condition` comes to hold within about five seconds, looked at every 5 ms."""
    for _ in range(1000):
        if condition():
            return True
        await asyncio.sleep(0.005)
    return bool(condition())


def names(logs: list[dict[str, Any]]) -> list[str]:
    return [line["event"] for line in logs]


# -- success -------------------------------------------------------------------------------


def test_a_success_is_acknowledged_and_recorded(
    harness_on: Callable[[], Any], redis_client: redis.Redis, keys: QueueKeys
) -> None:
    async def scenario() -> None:
        async with harness_on() as harness:
            running = await harness.take(job("inproc.work", "ok-1"))
            with capture_logs() as logs:
                await harness.runner.run(running)
            assert running.task is not None  # the runner bound its task
            assert names(logs) == ["job.started", "job.succeeded"]
            assert harness.runner.finished_total == 1
            assert counted_outcomes(harness.runner.throughput, keys.queue) == {"ok": 1}
            assert harness.outcomes("succeeded", "inproc.work") == 1
            assert redis_client.llen(harness.processing) == 0

    run(scenario)
    found = record(redis_client, keys, "ok-1")
    assert (found["status"], found["attempts"], found["result"]) == ("succeeded", 1, "ok-1")
    assert found["finished_at"] >= found["started_at"]


def test_a_success_after_a_failed_attempt_clears_the_earlier_error(
    harness_on: Callable[[], Any], redis_client: redis.Redis, keys: QueueKeys
) -> None:
    raw = job("inproc.flaky", "flaky-1", 2)

    async def scenario() -> None:
        async with harness_on() as harness:
            await harness.runner.run(await harness.take(raw))
            assert record(redis_client, keys, "flaky-1")["status"] == "retrying"
            redis_client.zrem(keys.delayed, raw)  # its retry falls due and is taken again
            await harness.runner.run(await harness.take(raw))
            assert redis_client.llen(harness.processing) == 0

    run(scenario)
    found = record(redis_client, keys, "flaky-1")
    assert (found["status"], found["attempts"], found["result"]) == ("succeeded", 2, 2)
    assert not {"reason", "error", "traceback"} & found.keys()


# -- failures ------------------------------------------------------------------------------


def test_a_failure_with_attempts_left_is_retried_after_a_backoff_from_the_delayed_set(
    harness_on: Callable[[], Any], redis_client: redis.Redis, keys: QueueKeys
) -> None:
    raw = job("inproc.fail", "retry-1", "it broke")
    window: list[float] = []

    async def scenario() -> None:
        async with harness_on() as harness:
            running = await harness.take(raw)
            window.append(time.time())
            with capture_logs() as logs:
                await harness.runner.run(running)
            window.append(time.time())
            assert names(logs) == ["job.started", "job.failed", "job.retrying"]
            assert harness.outcomes("retried", "inproc.fail") == 1
            assert harness.runner.finished_total == 0
            assert counted_outcomes(harness.runner.throughput, keys.queue) == {}
            assert redis_client.llen(harness.processing) == 0

    run(scenario)
    due_ms = redis_client.zscore(keys.delayed, raw)
    assert due_ms is not None
    # The task's own backoff (base 10 s, cap 10 s): a delay between 0 and 10 s.
    assert window[0] * 1000 - 1 <= due_ms <= (window[1] + 10) * 1000 + 1
    found = record(redis_client, keys, "retry-1")
    assert (found["status"], found["attempts"], found["reason"]) == ("retrying", 1, "handler_error")
    assert found["error"] == "RuntimeError: it broke"
    assert "RuntimeError: it broke" in found["traceback"]
    assert found["next_attempt_at"] == pytest.approx(due_ms / 1000)


def test_a_retry_asked_for_waits_exactly_its_delay_then_is_promoted_to_the_front(
    harness_on: Callable[[], Any], redis_client: redis.Redis, keys: QueueKeys
) -> None:
    raw = job("inproc.retry_after", "later-1", 0.2)
    redis_client.lpush(keys.ready, job("inproc.work", "waiting"))

    async def scenario() -> None:
        async with harness_on() as harness:
            running = await harness.take(raw)
            before = time.time()
            await harness.runner.run(running)
            after = time.time()
            due_ms = redis_client.zscore(keys.delayed, raw)
            assert due_ms is not None
            assert (before + 0.2) * 1000 - 1 <= due_ms <= (after + 0.2) * 1000 + 1
            # At its due time the worker promotes it itself (an idle worker's pop wakes).
            assert await eventually(lambda: not redis_client.zcard(keys.delayed))

    run(scenario)
    assert ready_ids(redis_client, keys) == ["later-1", "waiting"]


def test_the_last_attempt_dead_letters_the_job_with_its_traceback(
    harness_on: Callable[[], Any], redis_client: redis.Redis, keys: QueueKeys
) -> None:
    raw = job("inproc.fail", "last-1", "for the third time")

    async def scenario() -> None:
        async with harness_on() as harness:
            running = await harness.take(raw, earlier_attempts=2)
            assert (running.attempt, running.job.max_attempts) == (3, 3)
            with capture_logs() as logs:
                await harness.runner.run(running)
            assert names(logs) == ["job.started", "job.failed", "job.dead"]
            assert harness.runner.finished_total == 1
            assert harness.outcomes("dead", "inproc.fail") == 1
            assert counted_outcomes(harness.runner.throughput, keys.queue) == {"failed": 1}

    run(scenario)
    [entry] = dead_entries(redis_client, keys)
    assert (entry["id"], entry["reason"], entry["attempts"]) == ("last-1", "handler_error", 3)
    assert "RuntimeError: for the third time" in entry["traceback"]
    assert "raise RuntimeError(message)" in entry["traceback"]
    assert entry["raw"] == raw.decode()
    found = record(redis_client, keys, "last-1")
    assert (found["status"], found["reason"]) == ("dead", "handler_error")
    assert redis_client.zcard(keys.delayed) == 0


def test_fail_dead_letters_at_once_with_attempts_left(
    harness_on: Callable[[], Any], redis_client: redis.Redis, keys: QueueKeys
) -> None:
    async def scenario() -> None:
        async with harness_on() as harness:
            await harness.runner.run(await harness.take(job("inproc.fail_for_good", "never")))

    run(scenario)
    [entry] = dead_entries(redis_client, keys)
    assert (entry["attempts"], entry["error"]) == (1, "Fail: never works")


@pytest.mark.parametrize(("max_attempts", "status"), [(1, "dead"), (2, "retrying")])
def test_a_job_over_its_timeout_fails_with_reason_timeout(
    harness_on: Callable[[], Any],
    redis_client: redis.Redis,
    keys: QueueKeys,
    tracker: Tracker,
    max_attempts: int,
    status: str,
) -> None:
    raw = job("inproc.hang", "slow-1", timeout=0.1, max_attempts=max_attempts)

    async def scenario() -> None:
        async with harness_on() as harness:
            started = time.monotonic()
            await harness.runner.run(await harness.take(raw))
            assert time.monotonic() - started < 3

    run(scenario)
    found = record(redis_client, keys, "slow-1")
    assert (found["status"], found["reason"]) == (status, "timeout")
    assert "0.1 s" in found["error"]
    assert tracker.finished["slow-1"] == 1  # the handler was cancelled, its cleanup ran


def test_a_result_that_is_not_json_dead_letters_the_job(
    harness_on: Callable[[], Any], redis_client: redis.Redis, keys: QueueKeys
) -> None:
    async def scenario() -> None:
        async with harness_on() as harness:
            await harness.runner.run(await harness.take(job("inproc.unserialisable", "obj")))

    run(scenario)
    [entry] = dead_entries(redis_client, keys)
    assert entry["reason"] == "result_not_serializable"


def test_a_sync_task_runs_in_the_executor_and_sees_its_job(
    harness_on: Callable[[], Any], redis_client: redis.Redis, keys: QueueKeys
) -> None:
    async def scenario() -> None:
        async with harness_on() as harness:
            await harness.runner.run(await harness.take(job("inproc.sync", "sync-1")))

    run(scenario)
    result = record(redis_client, keys, "sync-1")["result"]
    assert result["thread"].startswith("test-sync")
    assert (result["id"], result["attempt"]) == ("sync-1", 1)


def test_a_job_whose_attempts_were_all_lost_alone_is_dead_as_worker_lost_without_a_start(
    harness_on: Callable[[], Any], redis_client: redis.Redis, keys: QueueKeys, tracker: Tracker
) -> None:
    async def scenario() -> None:
        async with harness_on() as harness:
            running = await harness.take(job("inproc.work", "poison"), earlier_attempts=3)
            assert (running.attempt, running.used_up) == (3, True)  # no fourth start
            with capture_logs() as logs:
                await harness.runner.run(running)
            assert names(logs) == ["job.dead"]

    run(scenario)
    assert tracker.runs() == 0
    [entry] = dead_entries(redis_client, keys)
    assert (entry["reason"], entry["attempts"]) == ("worker_lost", 3)
    assert "all 3 of its attempts are used (3 started)" in entry["error"]
    found = record(redis_client, keys, "poison")
    assert (found["status"], found["attempts"]) == ("dead", 3)


def test_forgiven_attempts_are_not_held_against_a_job(
    harness_on: Callable[[], Any], redis_client: redis.Redis, keys: QueueKeys, tracker: Tracker
) -> None:
    """Two starts lost beside other jobs and forgiven: the third start is the job's first
    attempt as max_attempts counts, and its failure is retried, not dead-lettered."""

    async def scenario() -> None:
        async with harness_on() as harness:
            raw = job("inproc.fail", "forgiven")
            redis_client.hset(keys.job("forgiven"), "forgiven", 2)
            running = await harness.take(raw, earlier_attempts=2)
            assert (running.attempt, running.forgiven, running.held_attempt) == (3, 2, 1)
            await harness.runner.run(running)

    run(scenario)
    found = record(redis_client, keys, "forgiven")
    assert (found["status"], found["attempts"]) == ("retrying", 3)


# -- cancellation (shutdown) -------------------------------------------------------------------


async def run_until_started(harness: Harness, running: RunningJob) -> asyncio.Task[None]:
    task = asyncio.create_task(harness.runner.run(running))
    assert await eventually(lambda: TRACKER.started(running.job.id)), "the job never started"
    return task


def test_a_cancelled_job_goes_back_to_the_front_with_its_start_taken_back(
    harness_on: Callable[[], Any], redis_client: redis.Redis, keys: QueueKeys
) -> None:
    redis_client.lpush(keys.ready, job("inproc.work", "waiting"))

    async def scenario() -> None:
        async with harness_on() as harness:
            running = await harness.take(job("inproc.hang", "long-1"))
            task = await run_until_started(harness, running)
            with capture_logs() as logs:
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            [requeued] = events(logs, "job.requeued")
            assert requeued["held"] is True
            assert harness.outcomes("requeued", "inproc.hang") == 1
            assert redis_client.llen(harness.processing) == 0

    run(scenario)
    assert ready_ids(redis_client, keys) == ["long-1", "waiting"]
    found = record(redis_client, keys, "long-1")
    assert (found["status"], found["attempts"]) == ("queued", 0)


def test_a_cancelled_job_no_longer_held_is_not_put_back(
    harness_on: Callable[[], Any], redis_client: redis.Redis, keys: QueueKeys
) -> None:
    async def scenario() -> None:
        async with harness_on() as harness:
            running = await harness.take(job("inproc.hang", "gone-1"))
            task = await run_until_started(harness, running)
            redis_client.delete(harness.processing)  # recovered by another worker
            with capture_logs() as logs:
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            assert events(logs, "job.requeued")[0]["held"] is False
            assert harness.outcomes("requeued", "inproc.hang") == 0

    run(scenario)
    assert redis_client.llen(keys.ready) == 0


def test_a_cancelled_job_stays_held_when_redis_is_down_past_the_requeue_limit(
    harness_on: Callable[[], Any],
    redis_client: redis.Redis,
    keys: QueueKeys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runner_module, "REQUEUE_GIVE_UP_AFTER", 0.3)

    async def scenario() -> None:
        async with harness_on() as harness:
            running = await harness.take(job("inproc.hang", "stuck-1"))
            task = await run_until_started(harness, running)
            harness.queue.faults["requeue"] = ["drop"] * 1000
            with capture_logs() as logs:
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            assert names(logs)[-1] == "job.requeue_failed"
            assert redis_client.llen(harness.processing) == 1  # recovered after the TTL

    run(scenario)


async def counted_start(
    harness: Any, redis_client: redis.Redis, keys: QueueKeys, job_id: str
) -> tuple[RunningJobs, RunningJob, list[Started]]:
    """A job in the processing list with its start counted and a slot leased: what
    `JobRunner.launch` is given, before its task exists."""
    raw = job("inproc.hang", job_id)
    decoded = decode_job(raw, keys, REGISTRY, harness.settings)
    assert isinstance(decoded, ReceivedJob)
    redis_client.lpush(harness.processing, raw)
    start = JobStart(decoded.id, raw, decoded.task, decoded.max_attempts, None)
    call = harness.queue.protocol.start([start], start_token("t-"), None)
    starts = started(await harness.queue.run(call))
    jobs = RunningJobs()
    lease = harness.slots.lease(0)
    assert lease is not None
    return jobs, jobs.add(decoded, lease), starts


def test_a_producers_cancel_heard_before_the_jobs_task_first_runs_is_recorded_cancelled(
    harness_on: Callable[[], Any], redis_client: redis.Redis, keys: QueueKeys
) -> None:
    # The job's start is counted (its record says running) and its task is created, but the
    # cancel listener runs before the task's first step: a consumer-counted start makes that
    # likely, as the producer sees `running` before the loop has launched the job.
    async def scenario() -> None:
        async with harness_on() as harness:
            jobs, entry, starts = await counted_start(harness, redis_client, keys, "early-1")
            ended = asyncio.Event()
            with capture_logs() as logs:
                harness.runner.launch([entry], starts, lambda *_: ended.set())
                redis_client.hset(keys.job("early-1"), "cancel_requested", 1)  # cancel.lua's
                assert jobs.cancel_by_request(keys.queue, "early-1") == 1
                await asyncio.wait_for(ended.wait(), 5)
            assert entry.task is not None
            assert not entry.task.cancelled()
            assert "job.cancelled" in names(logs)
            assert not TRACKER.started("early-1")  # the handler never ran
            assert redis_client.llen(harness.processing) == 0

    run(scenario)
    assert record(redis_client, keys, "early-1")["status"] == "cancelled"


def test_a_shutdown_heard_before_the_jobs_task_first_runs_puts_the_job_back(
    harness_on: Callable[[], Any], redis_client: redis.Redis, keys: QueueKeys
) -> None:
    # The same window on the way out: the grace runs out between the job's launch and its
    # task's first step. The job goes back to the front of its queue, its start undone.
    async def scenario() -> None:
        async with harness_on() as harness:
            jobs, entry, starts = await counted_start(harness, redis_client, keys, "late-1")
            ended = asyncio.Event()
            with capture_logs() as logs:
                harness.runner.launch([entry], starts, lambda *_: ended.set())
                assert jobs.cancel_all() == 1
                await asyncio.wait_for(ended.wait(), 5)
            assert "job.requeued" in names(logs)
            assert not TRACKER.started("late-1")  # the handler never ran
            assert redis_client.llen(harness.processing) == 0
            assert redis_client.lrange(keys.ready, 0, -1) == [entry.job.raw]

    run(scenario)
    found = record(redis_client, keys, "late-1")
    assert (found["status"], found["attempts"]) == ("queued", 0)


# -- outcomes that cannot be written -------------------------------------------------------------

LOST_OUTCOMES = {
    "succeeded": (job("inproc.work", "lost-1"), "job.succeeded"),
    "retrying": (job("inproc.fail", "lost-1"), "job.retrying"),
    "dead": (job("inproc.fail", "lost-1", max_attempts=1), "job.dead"),
}


@pytest.mark.parametrize("recovered", ["left-our-list", "started-again-elsewhere"])
@pytest.mark.parametrize("outcome", LOST_OUTCOMES)
def test_an_outcome_of_a_job_recovered_meanwhile_records_nothing_and_logs_ack_lost(
    harness_on: Callable[[], Any],
    redis_client: redis.Redis,
    keys: QueueKeys,
    outcome: str,
    recovered: str,
) -> None:
    raw, recorded_event = LOST_OUTCOMES[outcome]

    async def scenario() -> None:
        async with harness_on() as harness:
            running = await harness.take(raw)
            if recovered == "left-our-list":
                redis_client.lrem(harness.processing, 1, raw)
            else:  # moved back while our heartbeat lapsed, then started by another worker
                redis_client.hincrby(keys.job("lost-1"), "attempts", 1)
            before = record(redis_client, keys, "lost-1")
            with capture_logs() as logs:
                await harness.runner.run(running)
            [lost] = events(logs, "job.ack_lost")
            assert lost["outcome"] == outcome
            assert not events(logs, recorded_event)
            assert record(redis_client, keys, "lost-1") == before
            assert harness.runner.finished_total == 0
            assert harness.metrics.registry.get_sample_value(
                "coroq_jobs_total",
                {"queue": keys.queue, "task": running.job.task, "outcome": outcome},
            ) in (None, 0.0)

    run(scenario)
    assert redis_client.zcard(keys.delayed) == 0
    assert redis_client.llen(keys.dead) == 0


@pytest.mark.parametrize("script", ["ack", "retry", "dead"])
def test_an_outcome_is_written_once_redis_answers_again(
    harness_on: Callable[[], Any], redis_client: redis.Redis, keys: QueueKeys, script: str
) -> None:
    raw = {
        "ack": job("inproc.work", "outage-1"),
        "retry": job("inproc.fail", "outage-1"),
        "dead": job("inproc.fail", "outage-1", max_attempts=1),
    }[script]
    status = {"ack": "succeeded", "retry": "retrying", "dead": "dead"}[script]

    async def scenario() -> None:
        async with harness_on() as harness:
            running = await harness.take(raw)
            harness.queue.faults[script] = ["drop", "drop"]
            with capture_logs() as logs:
                await harness.runner.run(running)
            assert harness.queue.calls.count(script) == 3
            assert events(logs, "redis.unavailable")
            assert events(logs, "redis.recovered")
            assert not events(logs, "job.ack_lost")

    run(scenario)
    assert record(redis_client, keys, "outage-1")["status"] == status


@pytest.mark.parametrize("script", ["ack", "retry", "dead"])
def test_an_outcome_whose_reply_was_lost_is_reported_as_recorded(
    harness_on: Callable[[], Any], redis_client: redis.Redis, keys: QueueKeys, script: str
) -> None:
    """The script ran; its reply was lost with the connection; sent again, it finds the job
    gone from the processing list (it moved it itself). The outcome was recorded here, and
    no other worker holds the job: the worker should report it (job.succeeded, counted; a
    retry promoted at its due time), not log it as lost."""
    raw, event, status = {
        "ack": (job("inproc.work", "once-1"), "job.succeeded", "succeeded"),
        "retry": (job("inproc.retry_after", "once-1", 0.05), "job.retrying", "retrying"),
        "dead": (job("inproc.fail", "once-1", max_attempts=1), "job.dead", "dead"),
    }[script]

    async def scenario() -> None:
        async with harness_on() as harness:
            running = await harness.take(raw)
            harness.queue.faults[script] = ["lose"]
            with capture_logs() as logs:
                await harness.runner.run(running)
            assert record(redis_client, keys, "once-1")["status"] == status
            assert names(logs)[-1] == event, names(logs)

    run(scenario)
