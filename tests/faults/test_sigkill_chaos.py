"""SIGKILL chaos: workers killed at random moments and restarted, thousands of jobs, none lost.

A killed worker's processing list is recovered by a live worker once the dead one's heartbeat
expires, so every job succeeds. The price is duplicates: a job that was running at a kill runs
again, so the extra starts are bounded by the jobs held at the kills, at most concurrency
times kills.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from producer.connection import sync_client
from producer.keys import QueueKeys
from tests.conftest import wait_for
from tests.faults.ledger import Ledger
from tests.faults.processes import FaultWorker, WorkerLauncher
from tests.faults.scale import scaled, timeout_for
from tests.topologies import RedisCluster

CONCURRENCY = 20
# Every start counts as an attempt, kills included (DESIGN §3, poison jobs). A job caught by
# several kills in a row must not be taken for poison here: that is test_poison_*'s subject.
MAX_ATTEMPTS = 50


def push_jobs(ledger: Ledger, count: int, rng: random.Random) -> None:
    envelopes = [
        ledger.envelope(
            f"j{i:06d}",
            "faults.work",
            max_attempts=MAX_ATTEMPTS,
            seconds=round(rng.uniform(0.0, 0.03), 4),
        )
        for i in range(count)
    ]
    ledger.push(envelopes)


def kill_at_random_moments(
    ledger: Ledger, launcher: WorkerLauncher, workers: list[FaultWorker], kills: int, seed: int
) -> list[int]:
    """Kill a worker `kills` times, each time one that holds jobs, and restart it at once.

    The moments are random points of the run's progress (jobs done), plus a random delay, so
    kills land at any step of a job: taken, starting, running, acknowledging. The restart is
    not waited for (a supervisor does not wait either), so the run goes on meanwhile. Returns
    how many jobs each killed worker held.
    """
    rng = random.Random(seed)
    total = len(ledger.ids)
    thresholds = sorted(int(rng.uniform(0.03, 0.8) * total) for _ in range(kills))
    held_at_kills = []
    for threshold in thresholds:
        wait_for(lambda t=threshold: ledger.done_count() >= t, timeout=120, interval=0.01)
        time.sleep(rng.uniform(0.0, 0.1))
        slot = wait_for(lambda: holding_jobs(ledger, workers, rng), timeout=60, interval=0.005)
        victim = workers[slot - 1]
        victim.kill()
        # The dead worker's list stays as it was until its heartbeat expires.
        held_at_kills.append(
            int(ledger.queue_client.llen(ledger.keys.processing(victim.worker_id)))
        )
        workers[slot - 1] = launcher.start(wait=False)
    for worker in workers:
        worker.wait_started()
    return held_at_kills


def holding_jobs(ledger: Ledger, workers: list[FaultWorker], rng: random.Random) -> int:
    """A random worker (its slot number + 1) among those that hold jobs now; 0 when none."""
    pipe = ledger.queue_client.pipeline(transaction=False)
    for worker in workers:
        pipe.llen(ledger.keys.processing(worker.worker_id))
    holders = [slot for slot, held in enumerate(pipe.execute()) if held]
    return rng.choice(holders) + 1 if holders else 0


def run_chaos(
    ledger: Ledger,
    make_launcher: Callable[..., WorkerLauncher],
    record_property: Callable[[str, Any], None],
    *,
    test: str,
    workers_at_once: int,
) -> None:
    seed = random.randrange(2**32)
    jobs, kills = scaled(5000), scaled(10)
    push_jobs(ledger, jobs, random.Random(seed))
    launcher = make_launcher(env={"COROQ_CONCURRENCY": str(CONCURRENCY)}, name="chaos")
    workers = [launcher.start() for _ in range(workers_at_once)]
    started = time.monotonic()

    held_at_kills = kill_at_random_moments(ledger, launcher, workers, kills, seed)
    everything_final = ledger.wait_all_final(timeout=timeout_for(90))
    for worker in workers:
        worker.terminate()
    exit_codes = [worker.wait(timeout=30) for worker in workers]

    figures = ledger.figures(
        test,
        seed=seed,
        workers_at_once=workers_at_once,
        concurrency=CONCURRENCY,
        kills=len(held_at_kills),
        held_at_kills=sum(held_at_kills),
        duplicate_bound=CONCURRENCY * len(held_at_kills),
        recovered=sum(line["count"] for line in launcher.events("jobs.recovered")),
        worker_processes=len(launcher.started),
        seconds=round(time.monotonic() - started, 1),
    )
    figures.publish(record_property)

    assert everything_final, (figures.as_dict(), ledger.where_unfinished())
    assert len(held_at_kills) >= 10
    assert figures.lost == 0, figures.as_dict()
    assert figures.succeeded == jobs, figures.as_dict()
    assert figures.dead == {}, figures.as_dict()
    # Each extra run comes from a job that a killed worker held; no more than that.
    assert figures.extra_starts <= sum(held_at_kills), figures.as_dict()
    assert figures.extra_attempts <= sum(held_at_kills), figures.as_dict()
    assert sum(held_at_kills) <= CONCURRENCY * len(held_at_kills)
    assert exit_codes == [0] * workers_at_once
    assert ledger.leftovers() == {"ready": 0, "delayed": 0, "processing": 0}


@pytest.mark.timeout(timeout_for(200))
def test_one_worker_killed_at_random_moments_loses_no_job(
    ledger: Ledger,
    make_launcher: Callable[..., WorkerLauncher],
    record_property: Callable[[str, Any], None],
) -> None:
    run_chaos(
        ledger, make_launcher, record_property, test="sigkill_chaos_1_worker", workers_at_once=1
    )


@pytest.mark.timeout(timeout_for(200))
def test_two_workers_killed_at_random_moments_lose_no_job(
    ledger: Ledger,
    make_launcher: Callable[..., WorkerLauncher],
    record_property: Callable[[str, Any], None],
) -> None:
    run_chaos(
        ledger, make_launcher, record_property, test="sigkill_chaos_2_workers", workers_at_once=2
    )


@pytest.mark.timeout(timeout_for(240))
def test_two_workers_killed_at_random_moments_on_a_cluster_lose_no_job(
    keys: QueueKeys,
    redis_client: redis.Redis,
    make_launcher: Callable[..., WorkerLauncher],
    record_property: Callable[[str, Any], None],
) -> None:
    """The same chaos on a 3-shard Redis Cluster (docs/operations.md#redis-cluster): the
    queue on one of its shards, the ledger on the session's Redis."""
    with RedisCluster() as cluster:
        queue_client = sync_client(cluster.url)
        try:
            ledger = Ledger(queue_client, keys, redis_client, f"faults:{keys.queue}")
            run_chaos(
                ledger,
                lambda **options: make_launcher(redis_url=cluster.url, **options),
                record_property,
                test="sigkill_chaos_cluster",
                workers_at_once=2,
            )
        finally:
            queue_client.close()
