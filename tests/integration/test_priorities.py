"""Priorities between queues (DESIGN §7, docs/scheduling.md#priorities), against the real
worker: `--queues critical,bulk` takes from critical first whenever a slot frees, however long
bulk's backlog; `critical:3,bulk:1` shares the slots by weight."""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable

import pytest
import redis

from producer import Producer
from producer.envelope import build_envelope
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


def test_a_critical_job_starts_at_once_behind_a_backlog_of_100_000(
    redis_url: str,
    redis_client: redis.Redis,
    keys: QueueKeys,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """A job pushed to `critical` while 100,000 wait in `bulk` starts before any bulk job
    that was not already on its way to a slot."""
    critical_keys = QueueKeys(f"{keys.queue}-critical")
    with (
        Producer(redis_url, queue=keys.queue) as bulk,
        Producer(redis_url, queue=critical_keys.queue) as critical,
    ):
        bulk_ids = bulk.push_many(
            [build_envelope("tests.nap", (0.005,), {}) for _ in range(100_000)]
        )
        worker = start_worker(
            "--concurrency", "4", env={"COROQ_QUEUES": f"{critical_keys.queue},{keys.queue}"}
        )
        wait_for(lambda: redis_client.llen(keys.ready) < 100_000 - 200, timeout=30)
        probes = []
        for _ in range(20):
            probes.append(critical.push("tests.add", 1, 1))
            time.sleep(0.02)
        found = critical.wait(probes, timeout=30)
        worker.stop()
        waiting = redis_client.llen(keys.ready)
        pipe = redis_client.pipeline(transaction=False)
        for job_id in bulk_ids:
            pipe.hget(keys.job(job_id), "started_at")
        bulk_starts = sorted(float(v) for v in pipe.execute() if v is not None)
        redis_client.delete(keys.ready)  # the rest of the backlog is not needed
    assert waiting > 90_000  # the backlog was there throughout
    for job_id in probes:
        pushed, begun = float(found[job_id]["enqueued_at"]), float(found[job_id]["started_at"])
        passed = bisect.bisect_left(bulk_starts, begun) - bisect.bisect_right(bulk_starts, pushed)
        assert passed <= 4, (job_id, passed)  # at most the slots that were already being filled
