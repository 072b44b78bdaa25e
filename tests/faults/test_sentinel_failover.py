"""Redis Sentinel (DESIGN §8, docs/operations.md#redis-sentinel) with real processes: a
primary, a replica and three sentinels started by the test. The worker and the producer
reach Redis through the sentinels; during a failover under load (SENTINEL FAILOVER, and a
SIGKILL of the primary) the worker follows the new primary by itself, and no job pushed with
`_durable=True` is lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from producer import CoroqError, NotReplicated, Producer
from producer.connection import sync_client
from producer.keys import QueueKeys
from tests.conftest import WorkerProcess, wait_for
from tests.faults.scale import scaled, timeout_for
from tests.integration.helpers import run_module
from tests.topologies import SentinelSet


@pytest.fixture
def sentinels() -> Iterator[SentinelSet]:
    with SentinelSet() as deployment:
        deployment.wait_ready(timeout=30)
        yield deployment


class DurablePusher(threading.Thread):
    """Pushes durable jobs one after another until stopped; keeps the ids it was told were
    pushed (acknowledged by a replica) apart from those it was not."""

    def __init__(self, url: str, queue: str) -> None:
        super().__init__(daemon=True)
        self._producer = Producer(url, queue=queue, durable_timeout=1.0)
        self.acknowledged: list[str] = []
        self.refused = 0
        self.stop = threading.Event()

    def run(self) -> None:
        number = 0
        while not self.stop.is_set():
            number += 1
            try:
                self.acknowledged.append(self._producer.push("tests.add", number, 1, _durable=True))
            except (redis.RedisError, CoroqError):  # PartialPush, NotReplicated
                self.refused += 1  # not acknowledged: the caller would push it again
                time.sleep(0.05)
            time.sleep(0.005)
        self._producer.close()


def succeeded(client: redis.Redis, keys: QueueKeys, ids: list[str]) -> int:
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(keys.job(job_id), "status")
    return sum(1 for status in pipe.execute() if status == b"succeeded")


def run_through(
    sentinels: SentinelSet,
    keys: QueueKeys,
    start_worker: Callable[..., WorkerProcess],
    change_primary: Callable[[], None],
    *,
    replica_left: bool,
) -> None:
    worker = start_worker("--concurrency", "8", env={"COROQ_REDIS_URL": sentinels.url})
    pusher = DurablePusher(sentinels.url, keys.queue)
    pusher.start()
    wait_for(lambda: len(pusher.acknowledged) >= scaled(50), timeout=timeout_for(20))
    old_primary = sentinels.primary_address()
    change_primary()
    assert sentinels.primary_address() != old_primary
    after = len(pusher.acknowledged)
    if replica_left:  # the old primary follows the new one: durable pushes go on
        wait_for(lambda: len(pusher.acknowledged) >= after + scaled(50), timeout=timeout_for(30))
    else:  # no replica is left to confirm a durable push: they are refused, none lost
        refused = pusher.refused
        wait_for(lambda: pusher.refused > refused + 3, timeout=30)
    pusher.stop.set()
    pusher.join(10)
    client = sync_client(sentinels.url)
    try:
        ids = list(pusher.acknowledged)
        with Producer(sentinels.url, queue=keys.queue) as producer:  # plain pushes go on
            ids += [producer.push("tests.add", n, 1) for n in range(20)]
        # Lost = 0: every job a replica confirmed runs, on the same worker process.
        wait_for(lambda: succeeded(client, keys, ids) == len(ids), timeout=60)
    finally:
        client.close()
    assert worker.process.poll() is None  # it followed the new primary without a restart
    assert worker.events("redis.recovered")  # it saw the gap, and the end of it


def test_a_failover_under_load_loses_no_durable_job(
    sentinels: SentinelSet, keys: QueueKeys, start_worker: Callable[..., WorkerProcess]
) -> None:
    run_through(
        sentinels, keys, start_worker, lambda: sentinels.failover(timeout=30), replica_left=True
    )


def test_a_sigkilled_primary_loses_no_durable_job(
    sentinels: SentinelSet, keys: QueueKeys, start_worker: Callable[..., WorkerProcess]
) -> None:
    def kill() -> None:
        old = sentinels.primary_address()
        sentinels.kill_primary()
        sentinels.wait_for_new_primary(old, timeout=30)

    run_through(sentinels, keys, start_worker, kill, replica_left=False)


def test_every_cli_verb_takes_a_sentinel_url(sentinels: SentinelSet, keys: QueueKeys) -> None:
    env = {"COROQ_REDIS_URL": sentinels.url}
    pushed = run_module(
        "producer", "push", "--queue", keys.queue, "--redis-url", sentinels.url, "--durable", "-",
        env=env, stdin=b'{"task": "echo", "args": [1]}\n',
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    stats = run_module("producer", "stats", "--redis-url", sentinels.url, "--json", env=env)
    assert stats.returncode == 0, stats.stderr
    assert keys.queue in stats.stdout
    check = run_module("worker", "check", env={**env, "COROQ_QUEUES": keys.queue})
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_durable_push_no_replica_confirms_names_its_jobs(redis_url: str, keys: QueueKeys) -> None:
    """The suite's own Redis has no replica: nothing can confirm a durable push."""
    with Producer(redis_url, queue=keys.queue, durable_timeout=0.2) as producer:
        with pytest.raises(NotReplicated) as caught:
            producer.push("echo", 1, _id="lonely", _durable=True)
        assert caught.value.unconfirmed == ["lonely"]
        assert "lonely" in str(caught.value)
        assert producer.push("echo", 2) is not None  # a plain push does not wait
    refused = run_module(
        "producer", "push", "--queue", keys.queue, "--redis-url", redis_url, "--durable",
        "--durable-timeout", "0.2", "-", env={}, stdin=b'{"task": "echo", "id": "cli-1"}\n',
    )  # fmt: skip
    assert refused.returncode == 1
    assert "not confirmed by a replica: cli-1" in refused.stderr
