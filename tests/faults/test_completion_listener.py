"""The producer's completion listener (docs/futures.md#completion) through faults: its pub/sub
connection cut again and again while jobs end, and Redis restarted while it waits. Every
future must resolve, with the job's result: lost completions = 0."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from producer import AsyncProducer
from producer.keys import QueueKeys
from tests.faults.ledger import Ledger
from tests.faults.processes import WorkerLauncher
from tests.faults.scale import scaled
from tests.faults.test_redis_restart import RestartableRedis

JOB_SECONDS = 0.3


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RestartableRedis]:
    server = RestartableRedis(tmp_path / "redis-data")
    yield server
    server.stop()


async def _submit_and_gather(
    url: str, keys: QueueKeys, ledger: Ledger, count: int, meanwhile: Callable[[], None]
) -> list[str]:
    """Submit `count` jobs, then run `meanwhile` in a thread while waiting on them all."""
    async with AsyncProducer(url, queue=keys.queue) as producer:
        jobs = [
            await producer.submit(
                "faults.work", ledger=ledger.name, name=f"j{n:04d}", seconds=JOB_SECONDS
            )
            for n in range(count)
        ]
        fault = asyncio.ensure_future(asyncio.to_thread(meanwhile))
        results = list(await asyncio.wait_for(asyncio.gather(*jobs), 120))
        await fault
        return results


def _keep_cutting(client: redis.Redis, stop: threading.Event) -> int:
    cuts = 0
    while not stop.wait(0.05):
        cuts += int(client.client_kill_filter(_type="pubsub") or 0)
    return cuts


def test_no_completion_is_lost_while_the_listener_is_cut_off_again_and_again(
    make_launcher: Callable[..., WorkerLauncher],
    redis_url: str,
    redis_client: redis.Redis,
    keys: QueueKeys,
    ledger: Ledger,
) -> None:
    make_launcher(env={"COROQ_CONCURRENCY": "20"}).start()
    count = scaled(200)
    cuts: list[int] = []

    def cut_for_a_while() -> None:
        stop = threading.Event()
        threading.Timer(count / 20 * JOB_SECONDS, stop.set).start()
        cuts.append(_keep_cutting(redis_client, stop))

    results = asyncio.run(_submit_and_gather(redis_url, keys, ledger, count, cut_for_a_while))
    assert results == [f"j{n:04d}" for n in range(count)]
    assert cuts[0] > 0  # the listener was really cut off


def test_no_completion_is_lost_across_a_redis_restart(
    make_launcher: Callable[..., WorkerLauncher],
    aof_redis: RestartableRedis,
    keys: QueueKeys,
    ledger: Ledger,
) -> None:
    make_launcher(redis_url=aof_redis.url, env={"COROQ_CONCURRENCY": "10"}).start()
    count = scaled(60)

    def restart_soon() -> None:
        time.sleep(JOB_SECONDS)
        aof_redis.restart(kill=False)

    results = asyncio.run(_submit_and_gather(aof_redis.url, keys, ledger, count, restart_soon))
    assert results == [f"j{n:04d}" for n in range(count)]
