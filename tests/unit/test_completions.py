"""The completion listener when Redis cannot be reached: a wait fails with a clear error in
bounded time, and nothing hangs (no Redis listens on the port used here)."""

from __future__ import annotations

import asyncio

import pytest

import producer.completions
import producer.completions_thread
from producer import AsyncProducer, Producer
from producer.errors import RedisUnavailable
from worker.local_redis import free_port


@pytest.fixture
def nowhere(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(producer.completions, "SUBSCRIBE_WITHIN", 0.3)
    monkeypatch.setattr(producer.completions_thread, "SUBSCRIBE_WITHIN", 0.3)
    return f"redis://127.0.0.1:{free_port()}/0"


def test_the_future_of_a_job_fails_when_redis_cannot_be_reached(nowhere: str) -> None:
    async def scenario() -> BaseException | None:
        async with AsyncProducer(nowhere, queue="q") as p:
            job = p.job("some-id")
            await asyncio.wait({job}, timeout=10)
            return job.exception() if job.done() else None

    error = asyncio.run(scenario())
    assert isinstance(error, RedisUnavailable)
    assert "could not subscribe to job completions" in str(error)


def test_a_sync_wait_fails_when_redis_cannot_be_reached(nowhere: str) -> None:
    with Producer(nowhere, queue="q") as p, pytest.raises(RedisUnavailable):
        p.wait(["some-id"], timeout=5)
