"""Priorities between queues (DESIGN §7, docs/scheduling.md#priorities), against the real
worker: `--queues critical,bulk` takes from critical first whenever a slot frees, however long
bulk's backlog; `critical:3,bulk:1` shares the slots by weight."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from producer import Producer
from producer.keys import QueueKeys
from tests.conftest import WorkerProcess, wait_for

pytestmark = pytest.mark.slow  # they wait for backlogs to drain and shares to settle


def started_at(client: redis.Redis, keys: QueueKeys, ids: list[str]) -> list[float]:
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(keys.job(job_id), "started_at")
    return [float(value) for value in pipe.execute() if value is not None]


def test_the_first_queue_takes_every_free_slot_before_the_next(
    redis_url: str,
    redis_client: redis.Redis,
    keys: QueueKeys,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    critical_keys = QueueKeys(f"{keys.queue}-critical")
    queues = f"{critical_keys.queue},{keys.queue}"
    with (
        Producer(redis_url, queue=keys.queue) as bulk,
        Producer(redis_url, queue=critical_keys.queue) as critical,
    ):
        bulk_ids = [bulk.push("tests.nap", 0.02) for _ in range(300)]
        start_worker("--concurrency", "4", env={"COROQ_QUEUES": queues})
        wait_for(lambda: len(started_at(redis_client, keys, bulk_ids)) >= 20, timeout=20)
        critical_ids = [critical.push("tests.nap", 0.02) for _ in range(40)]
        critical.wait(critical_ids, timeout=30)
        last_critical = max(started_at(redis_client, critical_keys, critical_ids))
        first_critical = min(started_at(redis_client, critical_keys, critical_ids))
        bulk_meanwhile = [
            t
            for t in started_at(redis_client, keys, bulk_ids)
            if first_critical < t < last_critical
        ]
        # Bulk jobs may start only in the moments a free slot finds no critical job taken yet.
        assert len(bulk_meanwhile) <= 4, len(bulk_meanwhile)
        bulk.wait(bulk_ids, timeout=60)


def test_weights_share_the_slots(
    redis_url: str,
    redis_client: redis.Redis,
    keys: QueueKeys,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    heavy_keys = QueueKeys(f"{keys.queue}-heavy")
    with (
        Producer(redis_url, queue=keys.queue) as light,
        Producer(redis_url, queue=heavy_keys.queue) as heavy,
    ):
        light_ids = [light.push("tests.nap", 0.05) for _ in range(200)]
        heavy_ids = [heavy.push("tests.nap", 0.05) for _ in range(600)]
        start_worker(
            "--concurrency", "8", env={"COROQ_QUEUES": f"{heavy_keys.queue}:3,{keys.queue}:1"}
        )
        # Past the first takes (each queue alone takes what it can), while both have a
        # backlog: about three heavy jobs start for each light one.
        counts = []
        for light_started in (30, 90):
            wait_for(
                lambda n=light_started: len(started_at(redis_client, keys, light_ids)) >= n,
                timeout=30,
            )
            counts.append(
                (
                    len(started_at(redis_client, heavy_keys, heavy_ids)),
                    len(started_at(redis_client, keys, light_ids)),
                )
            )
        heavy_count = counts[1][0] - counts[0][0]
        light_count = counts[1][1] - counts[0][1]
        assert 1.8 <= heavy_count / light_count <= 4.5, counts
