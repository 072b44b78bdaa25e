"""`producer stats` against the real redis-server and a real worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import redis

from producer.keys import QueueKeys
from tests.conftest import wait_for


def stats(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COROQ_REDIS_URL": redis_url, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "producer", "stats", *args],
        env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


def test_stats_json_counts_each_state_and_the_jobs_finished_recently(
    redis_url: str, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    redis_client.lpush(keys.ready, "a", "b")
    redis_client.zadd(keys.delayed, {"c": time.time() * 1000 + 60_000})
    redis_client.lpush(keys.processing("gone-worker"), "d")
    redis_client.lpush(keys.dead, "e")
    redis_client.hset(
        keys.job("recent"), mapping={"status": "succeeded", "finished_at": time.time()}
    )
    redis_client.hset(keys.job("old"), mapping={"status": "succeeded", "finished_at": 1000.0})
    result = stats(redis_url, "--json", "--queue", keys.queue)
    assert result.returncode == 0, result.stderr
    snapshot = json.loads(result.stdout)
    (queue,) = snapshot["queues"]
    assert queue == {
        "queue": keys.queue, "ready": 2, "delayed": 1, "processing": 1, "dead": 1,
        "workers": 0, "finished_last_window": 1,
    }  # fmt: skip
    assert snapshot["in_flight"] == 1
    assert snapshot["throughput_per_s"] == 1 / 60
    assert snapshot["workers"] == []


def test_stats_lists_a_live_worker_with_its_heartbeat_age(
    start_worker, redis_url: str, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    worker = start_worker("--concurrency", "3")
    wait_for(lambda: redis_client.exists(keys.worker(_worker_id(redis_client, keys))))
    result = stats(redis_url, "--json", "--no-throughput", "--queue", keys.queue)
    assert result.returncode == 0, result.stderr
    snapshot = json.loads(result.stdout)
    assert snapshot["throughput_per_s"] is None
    (live,) = snapshot["workers"]
    assert live["queues"] == [keys.queue]
    assert live["pid"] == worker.process.pid
    assert 0 <= live["heartbeat_age_s"] < 30
    assert snapshot["queues"][0]["workers"] == 1
    table = stats(redis_url, "--queue", keys.queue)
    assert table.returncode == 0, table.stderr
    assert live["worker_id"] in table.stdout
    assert "heartbeat age" in table.stdout
    worker.signal()
    assert worker.wait() == 0


def _worker_id(client: redis.Redis, keys: QueueKeys) -> str:
    for member in client.smembers("coroq:workers"):  # type: ignore[union-attr]
        worker_id = member.decode()
        if client.exists(keys.worker(worker_id)):
            return worker_id
    return "none"


def test_stats_finds_every_queue_when_none_is_named(
    redis_url: str, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    redis_client.lpush(keys.ready, "a")
    result = stats(redis_url, "--json", "--no-throughput")
    assert result.returncode == 0, result.stderr
    names = [queue["queue"] for queue in json.loads(result.stdout)["queues"]]
    assert keys.queue in names


def test_stats_exits_1_when_redis_is_unreachable() -> None:
    result = stats("redis://127.0.0.1:1/0", "--json")
    assert result.returncode == 1
    assert "Redis at redis://127.0.0.1:1/0" in result.stderr
