"""Push, run, record: jobs travel from a producer through the real worker into their record."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import orjson
import pytest
import redis

from producer import AsyncProducer, Producer
from producer.keys import QueueKeys
from tests.conftest import wait_for
from tests.integration.helpers import (
    dead_entries,
    processing_total,
    record,
    wait_for_outcome,
    worker_id,
)
from worker.local_redis import RedisServerProcess


def assert_succeeded_once(found: dict, *, task: str, queue: str, worker: str) -> None:
    assert found["status"] == "succeeded", found
    assert found["attempts"] == 1
    assert found["task"] == task
    assert found["queue"] == queue
    assert found["worker"] == worker
    assert found["started_at"] <= found["finished_at"]


def test_async_task_pushed_with_the_producer_runs_once_and_is_recorded(
    start_worker, producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    worker = start_worker()
    job_id = producer.push("tests.add", 2, 3)
    found = wait_for_outcome(redis_client, keys, job_id)
    assert_succeeded_once(found, task="tests.add", queue=keys.queue, worker=worker_id(worker))
    assert found["result"] == 5
    assert found["enqueued_at"] <= found["started_at"]
    assert producer.status(job_id) == found
    assert processing_total(redis_client, keys) == 0
    assert redis_client.llen(keys.ready) == 0


def test_sync_task_runs_off_the_event_loop_thread(
    start_worker, producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    worker = start_worker()
    job_id = producer.push("tests.sync_add", a=20, b=22)
    found = wait_for_outcome(redis_client, keys, job_id)
    assert_succeeded_once(found, task="tests.sync_add", queue=keys.queue, worker=worker_id(worker))
    assert found["result"]["sum"] == 42
    assert found["result"]["thread"].startswith("coroq-sync")
    assert processing_total(redis_client, keys) == 0


def test_async_producer_pushes_jobs_the_worker_runs(
    start_worker, redis_url: str, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    worker = start_worker()

    async def push_and_read() -> tuple[list[str], dict | None]:
        async with AsyncProducer(redis_url, queue=keys.queue) as client:
            ids = [
                await client.push("tests.add", 1, 2),
                await client.push("tests.sync_add", a=3, b=4),
            ]
            for job_id in ids:
                await asyncio.to_thread(wait_for_outcome, redis_client, keys, job_id)
            return ids, await client.status(ids[0])

    (add_id, sync_id), status = asyncio.run(push_and_read())
    assert status is not None
    assert status["status"] == "succeeded"
    assert status["result"] == 3
    found = record(redis_client, keys, sync_id)
    assert_succeeded_once(found, task="tests.sync_add", queue=keys.queue, worker=worker_id(worker))
    assert found["result"]["sum"] == 7
    assert found["result"]["thread"].startswith("coroq-sync")
    assert record(redis_client, keys, add_id)["attempts"] == 1
    assert processing_total(redis_client, keys) == 0


def test_job_over_its_timeout_is_dead_lettered_and_the_worker_serves_on(
    start_worker, producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    worker = start_worker()
    slow = producer.push("tests.nap", 5, "too-slow", _timeout=0.3, _max_attempts=1)
    found = wait_for_outcome(redis_client, keys, slow)
    assert found["status"] == "dead"
    assert found["reason"] == "timeout"
    [entry] = dead_entries(redis_client, keys)
    assert entry["id"] == slow
    assert entry["reason"] == "timeout"
    assert "0.3" in entry["error"]
    assert orjson.loads(entry["raw"])["id"] == slow

    after = producer.push("tests.add", 1, 1)
    assert wait_for_outcome(redis_client, keys, after)["status"] == "succeeded"
    assert worker.process.poll() is None
    assert processing_total(redis_client, keys) == 0


def test_handler_exception_dead_letters_the_job_with_error_and_traceback(
    start_worker, producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    worker = start_worker()
    job_id = producer.push("tests.boom", "kaboom-7f3", _max_attempts=1)
    found = wait_for_outcome(redis_client, keys, job_id)
    assert found["status"] == "dead"
    assert found["reason"] == "handler_error"
    assert found["attempts"] == 1
    assert "kaboom-7f3" in found["error"]
    assert "RuntimeError" in found["traceback"]
    [entry] = dead_entries(redis_client, keys)
    assert entry["id"] == job_id
    assert entry["task"] == "tests.boom"
    assert entry["reason"] == "handler_error"
    assert "RuntimeError" in entry["error"]
    assert "kaboom-7f3" in entry["error"]
    assert "RuntimeError: kaboom-7f3" in entry["traceback"]
    assert orjson.loads(entry["raw"])["args"] == ["kaboom-7f3"]
    # The record is written before the line is logged.
    dead_lines = wait_for(lambda: worker.events("job.dead"))
    assert [line["reason"] for line in dead_lines] == ["handler_error"]
    assert processing_total(redis_client, keys) == 0
    assert worker.process.poll() is None


def test_job_pushed_by_redis_cli_without_an_id_runs_under_an_id_the_worker_gives_it(
    start_worker,
    redis_server: RedisServerProcess,
    redis_client: redis.Redis,
    keys: QueueKeys,
) -> None:
    redis_cli = shutil.which("redis-cli")
    if redis_cli is None:
        pytest.skip("no redis-cli binary on PATH")
    worker = start_worker()
    subprocess.run(
        [redis_cli, "-p", str(redis_server.port), "LPUSH", keys.ready,
         '{"task":"echo","args":["hi"]}'],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    [succeeded] = wait_for(lambda: worker.events("job.succeeded"))
    job_id = succeeded["job_id"]
    assert succeeded["task"] == "echo"
    found = record(redis_client, keys, job_id)
    assert_succeeded_once(found, task="echo", queue=keys.queue, worker=worker_id(worker))
    assert found["result"] == ["hi"]
    assert redis_client.llen(keys.ready) == 0
    assert processing_total(redis_client, keys) == 0


@pytest.mark.parametrize("task_name", ["tests.exits", "tests.sync_exits", "tests.cancels_itself"])
def test_task_code_raising_base_exceptions_fails_the_job_not_the_worker(
    start_worker, producer: Producer, redis_client: redis.Redis, keys: QueueKeys, task_name: str
) -> None:
    worker = start_worker()
    failed = producer.push(task_name, _max_attempts=1)
    found = wait_for_outcome(redis_client, keys, failed)
    assert (found["status"], found["reason"], found["attempts"]) == ("dead", "handler_error", 1)
    good = producer.push("tests.add", 2, 3)
    assert wait_for_outcome(redis_client, keys, good)["result"] == 5
    assert worker.process.poll() is None
    assert processing_total(redis_client, keys) == 0
