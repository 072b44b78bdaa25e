"""Pausing a queue (DESIGN §7, docs/scheduling.md#pause), against real worker processes:
workers take nothing from a paused queue within a second, jobs running finish, the pause
outlives worker restarts, and resuming lets everything run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import orjson
import pytest
import redis

from producer import AsyncProducer, Producer
from producer.keys import QueueKeys
from tests.conftest import WorkerProcess, wait_for
from tests.integration.helpers import run_module

# Longer than the worker's look at a paused queue (every 0.5 s), so a start would show.
QUIET = 1.5


def started(client: redis.Redis, keys: QueueKeys, ids: list[str]) -> int:
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hexists(keys.job(job_id), "started_at")
    return sum(pipe.execute())


def test_a_paused_queue_runs_nothing_until_resumed(
    producer: Producer,
    redis_client: redis.Redis,
    keys: QueueKeys,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    assert producer.pause() is True
    assert producer.pause() is False  # paused already
    ids = [producer.push("tests.add", i, i) for i in range(5)]
    start_worker()
    time.sleep(QUIET)
    assert started(redis_client, keys, ids) == 0
    assert redis_client.llen(keys.ready) == 5
    assert producer.is_paused()
    assert producer.resume() is True
    assert producer.resume() is False
    records = producer.wait(ids, timeout=20)
    assert [records[i]["result"] for i in ids] == [0, 2, 4, 6, 8]


@pytest.mark.slow
def test_pausing_under_load_stops_new_starts_and_lets_running_jobs_finish(
    producer: Producer,
    redis_client: redis.Redis,
    keys: QueueKeys,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    start_worker("--concurrency", "8")
    ids = [producer.push("tests.nap", 0.05) for _ in range(400)]
    wait_for(lambda: started(redis_client, keys, ids) >= 40, timeout=20)
    producer.pause()
    time.sleep(1.0)  # the promise: within a second
    before = started(redis_client, keys, ids)
    time.sleep(QUIET)
    assert started(redis_client, keys, ids) == before
    assert before < len(ids)
    statuses = {producer.status(i)["status"] for i in ids[:before] if producer.status(i)}  # type: ignore[index]
    assert statuses == {"succeeded"}  # the jobs that were running finished
    producer.resume()
    assert len(producer.wait(ids, timeout=60)) == len(ids)


def test_a_job_popped_as_the_pause_begins_goes_back_unstarted(
    producer: Producer,
    redis_client: redis.Redis,
    keys: QueueKeys,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    worker = start_worker()
    # Idle: its consumer is blocked in its pop.
    wait_for(lambda: any(c["cmd"] == "blmove" for c in redis_client.client_list()))
    [started_event] = worker.events("worker.started")
    producer.pause()
    job_id = producer.push("tests.add", 1, 1)  # the pending pop takes it
    time.sleep(QUIET)
    assert started(redis_client, keys, [job_id]) == 0
    assert redis_client.llen(keys.ready) == 1
    assert redis_client.llen(keys.processing(started_event["worker_id"])) == 0
    assert worker.events("job.put_back_paused")
    producer.resume()
    assert producer.wait([job_id], timeout=20)[job_id]["result"] == 2


@pytest.mark.slow
def test_the_pause_outlives_worker_restarts(
    producer: Producer,
    redis_client: redis.Redis,
    keys: QueueKeys,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    producer.pause()
    start_worker().stop()
    start_worker()
    job_id = producer.push("tests.add", 2, 2)
    time.sleep(QUIET)
    assert started(redis_client, keys, [job_id]) == 0
    producer.resume()
    assert producer.wait([job_id], timeout=20)[job_id]["result"] == 4


def test_the_cli_pauses_resumes_and_stats_shows_it(redis_url: str, keys: QueueKeys) -> None:
    env = {"COROQ_REDIS_URL": redis_url}
    paused = run_module("producer", "queue", "pause", keys.queue, env=env)
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout.strip() == f"{keys.queue}: paused"
    again = run_module("producer", "queue", "pause", keys.queue, env=env)
    assert again.stdout.strip() == f"{keys.queue}: paused already"
    stats = run_module("producer", "stats", "--json", "-q", keys.queue, env=env)
    [queue] = orjson.loads(stats.stdout)["queues"]
    assert queue["paused"] is True
    table = run_module("producer", "stats", "-q", keys.queue, env=env)
    assert "(paused)" in table.stdout
    resumed = run_module("producer", "queue", "resume", keys.queue, env=env)
    assert resumed.stdout.strip() == f"{keys.queue}: resumed"
    bad = run_module("producer", "queue", "pause", "no{braces}", env=env)
    assert bad.returncode == 2
    assert "invalid queue name" in bad.stderr


def test_the_async_producer_pauses_too(redis_url: str, keys: QueueKeys) -> None:
    async def main() -> tuple[bool, bool, bool]:
        async with AsyncProducer(redis_url, queue=keys.queue) as p:
            return await p.pause(), await p.is_paused(), await p.resume()

    assert asyncio.run(main()) == (True, True, True)
