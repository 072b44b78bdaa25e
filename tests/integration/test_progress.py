"""A running task's progress (docs/futures.md#progress), through the real worker: in the
record, on the job's future, and from the thread of a `def` task."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis

from producer import AsyncProducer, Producer
from producer.keys import QueueKeys
from tests.conftest import WorkerProcess, wait_for


@pytest.mark.parametrize("task", ["tests.progress", "tests.sync_progress"])
def test_progress_reaches_the_record_and_the_future(
    task: str,
    producer: Producer,
    redis_client: redis.Redis,
    keys: QueueKeys,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    worker = start_worker()
    job = producer.submit(task, 6, 0.3)
    wait_for(lambda: job.progress is not None and not job.done())
    assert job.progress is not None
    assert 0 < job.progress <= 1
    assert job.progress_note is not None
    assert job.progress_note.endswith("/6")
    record = producer.status(job.id)
    assert record is not None
    assert record["status"] == "running"
    assert 0 < record["progress"] <= 1
    assert job.result(timeout=20) == 6
    assert any(line.get("progress") for line in worker.events("job.progress"))


def test_the_async_future_sees_progress(
    redis_url: str, keys: QueueKeys, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker()

    async def scenario() -> list[float]:
        seen: list[float] = []
        async with AsyncProducer(redis_url, queue=keys.queue) as p:
            job = await p.submit("tests.progress", 8, 0.3)
            while not job.done():
                if job.progress is not None and job.progress not in seen:
                    seen.append(job.progress)
                await asyncio.sleep(0.05)
            assert await job == 8
        return seen

    seen = asyncio.run(scenario())
    assert seen == sorted(seen)
    assert len(seen) >= 2
