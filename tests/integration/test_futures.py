"""Jobs as futures (DESIGN §6, docs/futures.md), against the real worker process: the asyncio
patterns one by one, written as the tutorial writes them, then the sync twin."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import orjson
import pytest
import redis

from producer import AsyncJob, AsyncProducer, JobFailed, Producer
from producer.keys import QueueKeys
from tests.conftest import WorkerProcess, wait_for

T = TypeVar("T")


@pytest.fixture
def run(
    redis_url: str, keys: QueueKeys
) -> Callable[[Callable[[AsyncProducer], Coroutine[Any, Any, T]]], T]:
    """Run a scenario with an AsyncProducer of the test's queue, on a fresh event loop."""

    def run_scenario(scenario: Callable[[AsyncProducer], Coroutine[Any, Any, T]]) -> T:
        async def main() -> T:
            async with AsyncProducer(redis_url, queue=keys.queue) as producer:
                return await asyncio.wait_for(scenario(producer), 60)

        return asyncio.run(main())

    return run_scenario


Run = Callable[[Callable[[AsyncProducer], Coroutine[Any, Any, Any]]], Any]


def test_a_job_is_an_asyncio_future_with_its_result(
    run: Run, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker()

    async def scenario(p: AsyncProducer) -> None:
        job = await p.submit("tests.nap", 0.3, "done")
        assert isinstance(job, asyncio.Future)
        assert not job.done()
        with pytest.raises(asyncio.InvalidStateError):
            job.result()
        assert await job == "done"
        assert job.result() == "done"
        assert job.record is not None
        assert job.record["status"] == "succeeded"

    run(scenario)


def test_wait_first_completed_with_a_timeout(
    run: Run, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker()

    async def scenario(p: AsyncProducer) -> None:
        fast = await p.submit("tests.nap", 0.1, "fast")
        slow = await p.submit("tests.nap", 30, "slow")
        done, pending = await asyncio.wait(
            {fast, slow}, timeout=20, return_when=asyncio.FIRST_COMPLETED
        )
        assert done == {fast}
        assert pending == {slow}
        done, pending = await asyncio.wait({slow}, timeout=0.2)
        assert (done, pending) == (set(), {slow})
        slow.cancel()  # the job itself, running on the worker

    run(scenario)


def test_gather_with_and_without_return_exceptions(
    run: Run, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker()

    async def scenario(p: AsyncProducer) -> None:
        jobs = [
            await p.submit("tests.add", 1, 2),
            await p.submit("tests.boom", "kaput", _max_attempts=1),
            await p.submit("tests.add", 3, 4),
        ]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        assert results[0] == 3
        assert results[2] == 7
        failure = results[1]
        assert isinstance(failure, JobFailed)
        assert failure.reason == "handler_error"
        assert "kaput" in failure.error
        assert failure.record["status"] == "dead"
        with pytest.raises(JobFailed, match="kaput"):
            await asyncio.gather(jobs[0], await p.submit("tests.boom", "kaput", _max_attempts=1))

    run(scenario)


def test_done_callbacks_and_as_completed(
    run: Run, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker("--concurrency", "4")

    async def scenario(p: AsyncProducer) -> None:
        called: list[Any] = []
        first = await p.submit("tests.nap", 0.05, "first")
        first.add_done_callback(lambda job: called.append(job.result()))
        later = await p.submit("tests.nap", 1.0, "later")
        order = [await job for job in asyncio.as_completed([later, first])]
        assert order == ["first", "later"]
        await asyncio.sleep(0)  # callbacks run on the next turn of the loop
        assert called == ["first"]

    run(scenario)


def test_the_future_of_a_job_pushed_by_another_language(
    run: Run, start_worker: Callable[..., WorkerProcess], redis_client: redis.Redis, keys: QueueKeys
) -> None:
    start_worker()
    # What `redis-cli LPUSH` from any language does: no producer of ours involved.
    redis_client.lpush(
        keys.ready, orjson.dumps({"task": "tests.add", "args": [20, 22], "id": "x1"})
    )

    async def scenario(p: AsyncProducer) -> Any:
        return await p.job("x1")

    assert run(scenario) == 42


def test_a_job_already_final_resolves_at_once(
    run: Run, start_worker: Callable[..., WorkerProcess], producer: Producer
) -> None:
    start_worker()
    job_id = producer.push("tests.add", 1, 1)
    producer.wait([job_id], timeout=20)

    async def scenario(p: AsyncProducer) -> Any:
        job = p.job(job_id)
        return await asyncio.wait_for(job, 5)

    assert run(scenario) == 2


def test_wait_for_cancels_the_job_at_its_timeout_and_shield_does_not(
    run: Run,
    start_worker: Callable[..., WorkerProcess],
    redis_client: redis.Redis,
    keys: QueueKeys,
) -> None:
    start_worker()

    async def scenario(p: AsyncProducer) -> tuple[str, str]:
        cancelled = await p.submit("tests.nap", 0.8, "a")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(cancelled, 0.1)
        assert cancelled.cancelled()
        kept = await p.submit("tests.nap", 0.8, "b")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(kept), 0.1)
        assert await kept == "b"
        return cancelled.id, kept.id

    cancelled_id, kept_id = run(scenario)
    status = keys.job(cancelled_id)
    wait_for(lambda: redis_client.hget(status, "status") == b"cancelled")
    assert redis_client.hget(keys.job(kept_id), "status") == b"succeeded"


def test_many_futures_resolve_through_one_listener(
    run: Run, start_worker: Callable[..., WorkerProcess], redis_client: redis.Redis
) -> None:
    start_worker("--concurrency", "50")

    async def scenario(p: AsyncProducer) -> tuple[list[Any], int]:
        jobs: list[AsyncJob] = await asyncio.gather(
            *(p.submit("tests.add", n, n) for n in range(300))
        )
        subscribers = redis_client.pubsub_numpat()
        return list(await asyncio.gather(*jobs)), subscribers

    results, subscribers = run(scenario)
    assert results == [2 * n for n in range(300)]
    assert subscribers == 1  # this producer's one listener


def test_the_sync_twin_is_a_concurrent_future(
    start_worker: Callable[..., WorkerProcess], producer: Producer
) -> None:
    start_worker("--concurrency", "4")
    fast = producer.submit("tests.add", 2, 2)
    slow = producer.submit("tests.nap", 1.0, "slow")
    assert isinstance(fast, concurrent.futures.Future)
    with pytest.raises(concurrent.futures.TimeoutError):
        slow.result(timeout=0.05)
    done, pending = concurrent.futures.wait(
        [fast, slow], timeout=20, return_when=concurrent.futures.FIRST_COMPLETED
    )
    assert done == {fast}
    assert pending == {slow}
    assert [job.result() for job in concurrent.futures.as_completed([slow, fast])] == [4, "slow"]
    dead = producer.submit("tests.boom", "no", _max_attempts=1)
    with pytest.raises(JobFailed, match="no"):
        dead.result(timeout=20)
