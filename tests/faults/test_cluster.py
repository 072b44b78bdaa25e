"""Redis Cluster (DESIGN §8, docs/operations.md#redis-cluster) with a 3-shard Cluster started
by the test: queues spread over the shards by their hash tag; scripts, blocking pops, futures,
recovery of a SIGKILLed worker's jobs and the CLI work on every shard; a resharding that
moves a queue's slot under load (MOVED, ASK) loses no job."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from producer import CoroqError, Producer
from producer.connection import sync_client
from producer.keys import QueueKeys
from tests.conftest import WorkerProcess, wait_for
from tests.faults.scale import scaled, timeout_for
from tests.integration.helpers import run_module
from tests.topologies import RedisCluster, slot_of

# A lost worker noticed within about two seconds.
QUICK = {
    "COROQ_HEARTBEAT_INTERVAL": "0.5",
    "COROQ_HEARTBEAT_TTL": "2",
    "COROQ_REAPER_INTERVAL": "0.5",
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    with RedisCluster() as deployment:
        yield deployment


def spread_queues(cluster: RedisCluster, prefix: str) -> list[str]:
    """Three queue names whose slots live on three different shards."""
    found: dict[tuple[str, int], str] = {}
    number = 0
    while len(found) < 3:
        name = f"{prefix}-{number}"
        found.setdefault(cluster.node_for_slot(slot_of(f"{{{name}}}")), name)
        number += 1
    return list(found.values())


def statuses(url: str, queue: str, ids: list[str]) -> list[str]:
    client = sync_client(url)
    try:
        keys = QueueKeys(queue)
        return [(client.hget(keys.job(job_id), "status") or b"").decode() for job_id in ids]
    finally:
        client.close()


def blocked_in_a_pop(cluster: RedisCluster, port: int) -> bool:
    """Whether a client of the node at `port` waits in a blocking pop."""
    with redis.Redis(host=cluster.startup_nodes[0][0], port=port) as node:
        return any(
            client.get("cmd") == "blmove" and "b" in client.get("flags", "")
            for client in node.client_list()
        )


def test_queues_on_every_shard_run_their_jobs(
    cluster: RedisCluster, queue_name: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    queues = spread_queues(cluster, queue_name)
    start_worker(env={"COROQ_REDIS_URL": cluster.url, "COROQ_QUEUES": ",".join(queues)})
    for queue in queues:
        with Producer(cluster.url, queue=queue) as producer:
            ids = [producer.push("tests.add", n, 1) for n in range(20)]
            ids.append(producer.push("tests.add", 1, 1, _delay=0.2))
            assert producer.submit("tests.add", 2, 3).result(timeout=20) == 5
            records = producer.wait(ids, timeout=30)
            assert {record["status"] for record in records.values()} == {"succeeded"}
            assert producer.push("tests.unique_nap", 0.5, "u") == producer.push(
                "tests.unique_nap", 0.5, "u"
            )
            with pytest.raises(CoroqError, match="Cluster"):
                producer.push("tests.add", 1, 1, _durable=True)
    stats = run_module("producer", "stats", "--redis-url", cluster.url, "--json", env={})
    assert stats.returncode == 0, stats.stderr
    assert all(queue in stats.stdout for queue in queues)
    check = run_module(
        "worker", "check", env={"COROQ_REDIS_URL": cluster.url, "COROQ_QUEUES": queues[0]}
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_sigkilled_workers_jobs_run_again_on_another(
    cluster: RedisCluster, queue_name: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    queues = spread_queues(cluster, f"{queue_name}-k")
    env = {"COROQ_REDIS_URL": cluster.url, "COROQ_QUEUES": ",".join(queues), **QUICK}
    doomed = start_worker("--concurrency", "6", env=env)
    by_queue: dict[str, list[str]] = {}
    for queue in queues:
        with Producer(cluster.url, queue=queue) as producer:
            by_queue[queue] = [producer.push("tests.nap", 1.0, f"{queue}-{n}") for n in range(2)]
    wait_for(lambda: len(doomed.events("nap.begin")) == 6, timeout=20)
    doomed.signal(signal.SIGKILL)
    doomed.wait()
    start_worker("--concurrency", "6", env=env)
    for queue, ids in by_queue.items():
        wait_for(lambda q=queue, i=ids: statuses(cluster.url, q, i) == ["succeeded"] * 2, 30)


def test_an_idle_worker_cut_short_its_pops_on_every_shard_when_it_stops(
    cluster: RedisCluster, queue_name: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    # Its pops go to each queue's node, so CLIENT UNBLOCK reaches them there: the worker stops
    # at once, not at the end of pops that would block for 30 s.
    queues = spread_queues(cluster, f"{queue_name}-idle")
    env = {"COROQ_REDIS_URL": cluster.url, "COROQ_QUEUES": ",".join(queues)}
    worker = start_worker(env={**env, "COROQ_POLL_TIMEOUT": "30"})
    with Producer(cluster.url, queue=queues[-1]) as producer:  # it has popped, and waits again
        job_id = producer.push("echo", 1)
    wait_for(lambda: statuses(cluster.url, queues[-1], [job_id]) == ["succeeded"])
    wait_for(lambda: all(blocked_in_a_pop(cluster, port) for _, port in cluster.startup_nodes))
    started = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    assert time.monotonic() - started < 15, "a pop was waited out"


def test_a_slot_moved_under_load_loses_no_job(
    cluster: RedisCluster, queue_name: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    queue = f"{queue_name}-moved"
    slot = slot_of(f"{{{queue}}}")
    start_worker("--concurrency", "8", env={"COROQ_REDIS_URL": cluster.url, "COROQ_QUEUES": queue})
    pushed: list[str] = []
    stop = threading.Event()

    def push_steadily() -> None:
        with Producer(cluster.url, queue=queue) as producer:
            number = 0
            while not stop.is_set():
                pushed.append(producer.push("tests.nap", 0.01, f"n{number}"))
                number += 1
                time.sleep(0.005)

    pusher = threading.Thread(target=push_steadily, daemon=True)
    pusher.start()
    wait_for(lambda: len(pushed) >= scaled(100), timeout=timeout_for(20))
    source = cluster.node_for_slot(slot)
    target = next(port for _, port in cluster.startup_nodes if port != source[1])
    cluster.migrate_slot(slot, target)
    assert cluster.node_for_slot(slot)[1] == target
    count = len(pushed)
    # Pushes go on, to the new owner.
    wait_for(lambda: len(pushed) >= count + scaled(100), timeout=timeout_for(20))
    stop.set()
    pusher.join(10)
    ids = list(pushed)
    wait_for(lambda: statuses(cluster.url, queue, ids).count("succeeded") == len(ids), 60)
