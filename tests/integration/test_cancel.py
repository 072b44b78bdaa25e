"""Cancelling jobs (DESIGN §6, docs/futures.md#cancel), against the real worker process:
queued, delayed, running `async def` and running `def` jobs; final and unknown ids; the CLI."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable

import redis

from producer import AsyncProducer, CancelOutcome, Producer
from producer.keys import QueueKeys
from tests.conftest import WorkerProcess, wait_for
from tests.integration.helpers import record, run_module


def status(client: redis.Redis, keys: QueueKeys, job_id: str) -> str | None:
    value = client.hget(keys.job(job_id), "status")
    return None if value is None else value.decode()


def test_a_queued_job_is_removed_and_never_runs(
    producer: Producer,
    redis_client: redis.Redis,
    keys: QueueKeys,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    kept = producer.push("tests.add", 1, 1)
    doomed = producer.push("tests.add", 2, 2)
    found = producer.cancel(doomed)
    assert (found.outcome, found.status) == (CancelOutcome.CANCELLED, None)
    assert redis_client.llen(keys.ready) == 1
    assert record(redis_client, keys, doomed)["status"] == "cancelled"
    assert record(redis_client, keys, doomed)["reason"] == "by_request"
    start_worker()
    producer.wait([kept], timeout=20)
    assert "started_at" not in record(redis_client, keys, doomed)


def test_a_delayed_job_is_removed(
    producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    job_id = producer.push("tests.add", 1, 1, _delay=60)
    assert producer.cancel(job_id).outcome is CancelOutcome.CANCELLED
    assert redis_client.zcard(keys.delayed) == 0


def test_a_waiting_future_learns_of_the_cancel(producer: Producer) -> None:
    job = producer.submit("tests.add", 1, 1, _delay=60)
    other = producer.submit("tests.add", 1, 1, _delay=60)
    assert producer.cancel(job.id).outcome is CancelOutcome.CANCELLED
    wait_for(job.done, timeout=10)
    assert job.cancelled()
    # As for any cancelled future: `wait` and `as_completed` count it as done.
    done, _ = concurrent.futures.wait([job], timeout=20)
    assert done == {job}
    other.cancel()
    assert list(concurrent.futures.as_completed([other], timeout=20)) == [other]


def test_a_running_async_job_gets_cancelled_error_and_frees_its_slot(
    producer: Producer,
    redis_client: redis.Redis,
    keys: QueueKeys,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    worker = start_worker("--concurrency", "1")
    long = producer.submit("tests.nap", 60, "long")
    wait_for(lambda: status(redis_client, keys, long.id) == "running")
    found = producer.cancel(long.id)
    assert (found.outcome, found.status) == (CancelOutcome.REQUESTED, "running")
    wait_for(long.done, timeout=10)
    assert long.cancelled()
    assert record(redis_client, keys, long.id)["status"] == "cancelled"
    assert "result" not in record(redis_client, keys, long.id)
    [line] = worker.events("job.cancelled")
    assert line["started"] is True
    # The one slot is free again: the next job runs.
    assert producer.submit("tests.add", 5, 5).result(timeout=20) == 10
    owner = record(redis_client, keys, long.id)["worker"]
    assert redis_client.llen(keys.processing(owner)) == 0


def test_a_running_sync_job_is_marked_and_its_result_dropped(
    producer: Producer,
    redis_client: redis.Redis,
    keys: QueueKeys,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    start_worker()
    job = producer.submit("tests.sync_nap", 1.0)
    wait_for(lambda: status(redis_client, keys, job.id) == "running")
    assert producer.cancel(job.id).outcome is CancelOutcome.REQUESTED
    wait_for(lambda: status(redis_client, keys, job.id) == "cancelled", timeout=10)
    assert "result" not in record(redis_client, keys, job.id)


def test_cancelling_a_final_or_unknown_job_changes_nothing(
    producer: Producer,
    redis_client: redis.Redis,
    keys: QueueKeys,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    start_worker()
    job_id = producer.push("tests.add", 1, 2)
    producer.wait([job_id], timeout=20)
    found = producer.cancel(job_id)
    assert (found.outcome, found.status) == (CancelOutcome.FINAL, "succeeded")
    assert record(redis_client, keys, job_id)["result"] == 3
    assert producer.cancel("no-such-job").outcome is CancelOutcome.UNKNOWN
    assert not redis_client.exists(keys.job("no-such-job"))


def test_the_async_producer_cancels_too(
    redis_url: str,
    redis_client: redis.Redis,
    keys: QueueKeys,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    start_worker()

    async def scenario() -> tuple[CancelOutcome, bool]:
        async with AsyncProducer(redis_url, queue=keys.queue) as p:
            job = await p.submit("tests.nap", 60)
            running = lambda: status(redis_client, keys, job.id) == "running"  # noqa: E731
            await asyncio.to_thread(wait_for, running)
            found = await p.cancel(job.id)
            await asyncio.wait({job}, timeout=10)
            return found.outcome, job.cancelled()

    assert asyncio.run(scenario()) == (CancelOutcome.REQUESTED, True)


def test_the_cli_cancels_and_exits_1_for_an_unknown_id(
    producer: Producer, redis_url: str, keys: QueueKeys
) -> None:
    job_id = producer.push("tests.add", 1, 1)
    result = run_module(
        "producer",
        "cancel",
        job_id,
        "nobody",
        "--queue",
        keys.queue,
        env={"COROQ_REDIS_URL": redis_url},
    )
    assert result.returncode == 1, result.stderr
    assert f"{job_id}: cancelled before it started" in result.stdout
    assert "nobody: no such job in this queue" in result.stdout
