"""What a failover looks like to a worker: its blocking pop ended with UNBLOCKED, writes
answered with READONLY while the server is a replica, then a primary again. The worker waits
it out in the same process and carries on; and it warns about an eviction policy that could
drop jobs."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from producer import Producer
from producer.keys import QueueKeys
from tests.conftest import wait_for
from tests.integration.helpers import wait_for_outcome
from worker.local_redis import RedisServerProcess, free_port


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServerProcess]:
    """A redis-server of this test's own: it is turned into a replica and back."""
    server = RedisServerProcess()
    server.start()
    yield server
    server.cleanup()


def readonly_replies(client: redis.Redis) -> int:
    return int(client.info("errorstats").get("errorstat_READONLY", {}).get("count", 0))


def consumer_client_ids(client: redis.Redis) -> list[int]:
    """The connections blocked in BLMOVE (the worker's consumer threads)."""
    return [int(c["id"]) for c in client.client_list() if c.get("cmd") == "blmove"]


@pytest.mark.slow
def test_worker_rides_out_unblocked_and_readonly_and_warns_about_eviction(
    start_worker, own_redis: RedisServerProcess, keys: QueueKeys
) -> None:
    admin = redis.Redis.from_url(own_redis.url)
    admin.config_set("maxmemory-policy", "allkeys-lru")
    worker = start_worker(env={"COROQ_REDIS_URL": own_redis.url, "COROQ_POLL_TIMEOUT": "30"})
    [warning] = wait_for(lambda: worker.events("redis.eviction_policy"))
    assert warning["policy"] == "allkeys-lru"
    admin.config_set("maxmemory-policy", "noeviction")

    with Producer(own_redis.url, queue=keys.queue) as producer:
        first = producer.push("tests.add", 1, 1)
        assert wait_for_outcome(admin, keys, first)["status"] == "succeeded"

        # A failover ends blocked commands with an UNBLOCKED error.
        [blocked] = wait_for(lambda: consumer_client_ids(admin))
        admin.client_unblock(blocked, error=True)
        [unblocked] = wait_for(lambda: worker.events("redis.unavailable"))
        assert "UNBLOCKED" in unblocked["error"]
        wait_for(lambda: worker.events("redis.recovered"))

        # The server becomes a replica (of a primary that is not there): writes answer
        # READONLY until it is a primary again.
        admin.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
        wait_for(lambda: admin.info("replication")["role"] == "slave")
        with pytest.raises(redis.ReadOnlyError):
            admin.lpush(keys.ready, b"{}")
        wait_for(lambda: len(worker.events("redis.unavailable")) == 2)
        # The worker keeps trying and meets READONLY (the server counts it; ours was one).
        wait_for(lambda: readonly_replies(admin) >= 2)
        assert len(worker.events("redis.recovered")) == 1  # still waiting
        admin.execute_command("REPLICAOF", "NO", "ONE")

        second = producer.push("tests.add", 2, 2)
        found = wait_for_outcome(admin, keys, second, timeout=30)
        assert (found["status"], found["result"]) == ("succeeded", 4)

    assert len(worker.events("redis.recovered")) >= 2
    assert not worker.events("consumer.redis_error")  # all of it seen as an outage
    assert worker.process.poll() is None  # the same process throughout
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    admin.close()


def test_a_full_redis_is_waited_out_and_the_outcome_written_when_room_is_made(
    start_worker, own_redis: RedisServerProcess, keys: QueueKeys
) -> None:
    """maxmemory-policy noeviction: a full Redis refuses writes with OOM. The worker keeps
    the outcome and retries; nothing is dropped, nothing is reported as a bug."""
    admin = redis.Redis.from_url(own_redis.url)
    worker = start_worker(env={"COROQ_REDIS_URL": own_redis.url})
    with Producer(own_redis.url, queue=keys.queue) as producer:
        job_id = producer.push("tests.nap", 1.0, "full")
        wait_for(lambda: worker.events("nap.begin"))
        admin.config_set("maxmemory", "1")  # full: every write is refused
        try:
            [full] = wait_for(lambda: worker.events("redis.unavailable"), timeout=30)
            assert "maxmemory" in full["error"]
        finally:
            admin.config_set("maxmemory", "0")
        found = wait_for_outcome(admin, keys, job_id, timeout=30)
    assert (found["status"], found["attempts"]) == ("succeeded", 1)
    assert not worker.events("job.unrecorded")
    assert worker.process.poll() is None
    admin.close()
