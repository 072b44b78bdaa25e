"""SIGTERM drains the worker: running jobs finish or go back to the front, uncounted; exit 0."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from producer import Producer
from producer.keys import QueueKeys
from tests.conftest import WorkerProcess, wait_for
from tests.integration.helpers import (
    job_events,
    processing_keys,
    ready_ids,
    record,
    wait_for_outcome,
)


def statuses(client: redis.Redis, keys: QueueKeys, ids: list[str]) -> list[bytes | None]:
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(keys.job(job_id), "status")
    return pipe.execute()


@pytest.mark.slow
def test_sigterm_under_load_loses_no_job_and_a_second_worker_finishes_them_exactly_once(
    start_worker, producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    # Every tenth job outlives the 0.5 s grace, so some jobs are surely cancelled.
    ids = [producer.push("tests.nap", 3 if i % 10 == 0 else 0.2, f"n{i}") for i in range(200)]
    first = start_worker("--concurrency", "10", env={"COROQ_SHUTDOWN_GRACE": "0.5"})
    wait_for(lambda: len(first.events("job.started")) >= 20, timeout=30)
    first.signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0

    waiting = ready_ids(redis_client, keys)
    succeeded = {
        job_id for job_id, status in zip(ids, statuses(redis_client, keys, ids), strict=True)
        if status == b"succeeded"
    }  # fmt: skip
    assert len(waiting) == len(set(waiting))
    assert not succeeded & set(waiting)
    assert succeeded | set(waiting) == set(ids)
    assert processing_keys(redis_client, keys) == []
    assert redis_client.llen(keys.dead) == 0

    requeued = job_events(first, "job.requeued")
    assert requeued, "no job outlived the grace period"
    # Back at the consuming end of the ready list, their attempt not counted.
    assert set(waiting[: len(requeued)]) == set(requeued)
    for job_id in waiting:
        found = record(redis_client, keys, job_id)
        if job_id in requeued:
            assert (found["status"], found["attempts"]) == ("queued", 0), found
        else:
            assert found == {}, found  # never started

    second = start_worker("--concurrency", "50")
    wait_for(lambda: statuses(redis_client, keys, ids) == [b"succeeded"] * len(ids), timeout=60)
    second.signal(signal.SIGTERM)
    assert second.wait(timeout=30) == 0

    runs = Counter(job_events(first, "job.succeeded") + job_events(second, "job.succeeded"))
    assert runs == Counter(set(ids))
    assert {record(redis_client, keys, job_id)["attempts"] for job_id in ids} == {1}
    assert redis_client.llen(keys.ready) == 0
    assert processing_keys(redis_client, keys) == []
    assert redis_client.llen(keys.dead) == 0


@pytest.mark.slow
def test_sigterm_with_a_long_grace_lets_running_jobs_finish(
    start_worker, producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    worker = start_worker(env={"COROQ_SHUTDOWN_GRACE": "10"})
    ids = {producer.push("tests.nap", 1, f"n{i}"): f"n{i}" for i in range(5)}
    wait_for(lambda: len(worker.events("nap.begin")) == 5)
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0

    for job_id, marker in ids.items():
        found = record(redis_client, keys, job_id)
        assert (found["status"], found["attempts"], found["result"]) == ("succeeded", 1, marker)
    assert worker.events("job.requeued") == []
    [stopped] = worker.events("worker.stopped")
    assert stopped["cancelled"] == 0
    assert redis_client.llen(keys.ready) == 0
    assert processing_keys(redis_client, keys) == []


def test_second_sigterm_cuts_the_grace_short_and_requeues_the_running_job(
    start_worker, producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    worker = start_worker(env={"COROQ_SHUTDOWN_GRACE": "60"})
    job_id = producer.push("tests.nap", 60, "long")
    wait_for(lambda: worker.events("nap.begin"))
    worker.signal(signal.SIGTERM)
    wait_for(lambda: worker.events("worker.draining"))
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0

    assert ready_ids(redis_client, keys) == [job_id]
    found = record(redis_client, keys, job_id)
    assert (found["status"], found["attempts"]) == ("queued", 0)
    assert job_events(worker, "job.requeued") == [job_id]
    assert processing_keys(redis_client, keys) == []


def test_draining_worker_takes_no_new_job_after_sigterm(
    start_worker, producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    """The second job is waiting when SIGTERM arrives; the slot the first job frees during
    the drain must not be used to take it (DESIGN §3: "stop taking jobs")."""
    worker = start_worker(
        "--concurrency", "1", env={"COROQ_SHUTDOWN_GRACE": "10", "COROQ_POLL_TIMEOUT": "3"}
    )
    first = producer.push("tests.nap", 1, "first")
    second = producer.push("tests.nap", 1, "second")
    wait_for(lambda: worker.events("nap.begin"))
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0

    assert wait_for_outcome(redis_client, keys, first)["status"] == "succeeded"
    assert job_events(worker, "job.started") == [first], "a job was taken after SIGTERM"
    assert ready_ids(redis_client, keys) == [second]
    assert record(redis_client, keys, second) == {}


def _blocks(status: str, signum: int) -> bool:
    mask = int(
        next(line for line in status.splitlines() if line.startswith("SigBlk:")).split()[1], 16
    )
    return bool(mask & (1 << (signum - 1)))


def test_only_the_main_thread_can_take_a_stop_signal(
    start_worker: Callable[..., WorkerProcess], producer: Producer
) -> None:
    """A stop signal delivered to another thread would leave the main thread asleep in its
    wait: every thread but the main one blocks SIGTERM and SIGINT (the def-task pool's
    threads, started later, included)."""
    worker = start_worker()
    producer.wait([producer.push("tests.sync_add", 1, 2)], timeout=20)
    pid = worker.process.pid
    tasks = Path(f"/proc/{pid}/task")
    statuses = {int(task.name): (task / "status").read_text() for task in tasks.iterdir()}
    assert len(statuses) >= 5  # main, loop, consumer, heartbeat, watchdog, pool...
    for tid, status in statuses.items():
        for signum in (signal.SIGTERM, signal.SIGINT):
            assert _blocks(status, signum) == (tid != pid), (tid, signum)
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
