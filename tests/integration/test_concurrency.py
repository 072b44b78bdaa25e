"""The concurrency cap is taken before the pop: a backlog stays in Redis, not in the worker."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from producer import Producer
from producer.envelope import build_envelope
from producer.keys import QueueKeys
from tests.conftest import wait_for
from tests.integration.helpers import max_overlap, processing_keys, record, worker_id


@pytest.mark.slow
def test_worker_takes_no_more_jobs_from_redis_than_its_concurrency(
    start_worker, producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    worker = start_worker("--concurrency", "5")
    processing = keys.processing(worker_id(worker))
    # Pushed at once, after the worker is up, so sampling starts with the backlog whole.
    ids = producer.push_many([build_envelope("tests.nap", (0.2, f"n{i}"), {}) for i in range(50)])
    samples: list[dict[str, Any]] = []

    def sample() -> bool:
        # One atomic snapshot: every job is in exactly one of ready, processing, succeeded.
        pipe = redis_client.pipeline(transaction=True)
        pipe.llen(keys.ready)
        pipe.llen(processing)
        for job_id in ids:
            pipe.hget(keys.job(job_id), "status")
        ready, held, *statuses = pipe.execute()
        succeeded = statuses.count(b"succeeded")
        samples.append({"ready": ready, "held": held, "succeeded": succeeded})
        assert {key.decode() for key in processing_keys(redis_client, keys)} <= {processing}
        return succeeded == len(ids)

    wait_for(sample, timeout=60, interval=0.005)

    assert max(s["held"] for s in samples) <= 5
    for s in samples:
        assert s["ready"] + s["held"] + s["succeeded"] == 50, s
    # While jobs were running, the rest of the backlog was still waiting in Redis.
    assert any(s["held"] > 0 and s["ready"] >= 40 for s in samples), samples[:20]
    assert max_overlap(worker.logs(), "job.started", "job.succeeded") <= 5
    succeeded = wait_for(
        lambda: len(worker.events("job.succeeded")) == 50 and worker.events("job.succeeded")
    )
    assert sorted(line["job_id"] for line in succeeded) == sorted(ids)
    assert all(record(redis_client, keys, job_id)["attempts"] == 1 for job_id in ids)
    assert redis_client.llen(keys.ready) == 0
    assert processing_keys(redis_client, keys) == []


def test_per_task_limit_holds_below_a_larger_worker_concurrency(
    start_worker, producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    ids = [producer.push("tests.limited_traced", 0.15) for _ in range(8)]
    worker = start_worker("--concurrency", "20")
    wait_for(lambda: len(worker.events("job.succeeded")) == len(ids), timeout=60)

    # The handler's own events show the limit (the worker had room for all 8 at once).
    assert max_overlap(worker.logs(), "limited.begin", "limited.end") == 2
    assert {record(redis_client, keys, job_id)["status"] for job_id in ids} == {"succeeded"}
