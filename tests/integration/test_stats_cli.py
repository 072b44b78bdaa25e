"""`producer stats` against the real redis-server and a real worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import redis

import producer
from producer.keys import QueueKeys
from tests.conftest import wait_for


def stats(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COROQ_REDIS_URL": redis_url, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "producer", "stats", *args],
        env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


def test_stats_json_counts_each_state(
    redis_url: str, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    redis_client.lpush(keys.ready, "a", "b")
    redis_client.zadd(keys.delayed, {"c": time.time() * 1000 + 60_000})
    redis_client.lpush(keys.processing("gone-worker"), "d")
    redis_client.lpush(keys.dead, "e")
    redis_client.zadd(keys.suspects, {"f": 2, "g": 1})
    result = stats(redis_url, "--json", "--queue", keys.queue)
    assert result.returncode == 0, result.stderr
    snapshot = json.loads(result.stdout)
    (queue,) = snapshot["queues"]
    assert queue == {
        "queue": keys.queue, "ready": 2, "delayed": 1, "processing": 1, "dead": 1, "workers": 0,
        "suspects": 2, "paused": False,
    }  # fmt: skip
    table = stats(redis_url, "--queue", keys.queue)
    assert "suspects" in table.stdout, table.stdout
    assert snapshot["in_flight"] == 1
    assert snapshot["throughput_per_s"] is None  # no live worker reports one
    assert snapshot["workers"] == []


def fake_heartbeat(
    client: redis.Redis, keys: QueueKeys, worker_id: str, beat_at: float, **extra: object
) -> None:
    """A worker's liveness key as worker/heartbeat.py writes it, and its entry in the set."""
    value = {"host": "h", "pid": 4242, "started_at": beat_at - 100, "beat_at": beat_at, **extra}
    client.set(keys.worker(worker_id), json.dumps(value), px=60_000)
    client.sadd("coroq:workers", worker_id)


def test_stats_throughput_is_the_sum_of_the_live_workers_jobs_per_s(
    redis_url: str, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    other = QueueKeys(f"{keys.queue}-other")
    fast, slow, old, gone = (f"{keys.queue}-{name}" for name in ("fast", "slow", "old", "gone"))
    now = time.time()
    fake_heartbeat(redis_client, keys, fast, now, jobs_per_s=2.25)
    # Serves two queues: the freshest of its heartbeat values counts, once.
    fake_heartbeat(redis_client, keys, slow, now - 1, jobs_per_s=99.0)
    fake_heartbeat(redis_client, other, slow, now, jobs_per_s=1.5)
    fake_heartbeat(redis_client, keys, old, now)  # an older worker: no jobs_per_s
    redis_client.sadd("coroq:workers", gone)  # in the set, but its heartbeat has expired
    redis_client.lpush(keys.processing(fast), "j1", "j2")
    result = stats(redis_url, "--json", "--queue", keys.queue, "--queue", other.queue)
    assert result.returncode == 0, result.stderr
    snapshot = json.loads(result.stdout)
    assert snapshot["throughput_per_s"] == 3.75
    workers = {worker["worker_id"]: worker for worker in snapshot["workers"]}
    assert set(workers) == {fast, slow, old}
    assert workers[fast]["jobs_per_s"] == 2.25
    assert workers[fast]["in_flight"] == 2
    assert workers[slow]["jobs_per_s"] == 1.5
    assert workers[slow]["queues"] == [keys.queue, other.queue]
    assert workers[old]["jobs_per_s"] is None
    assert [queue["workers"] for queue in snapshot["queues"]] == [3, 1]
    assert all("finished_last_window" not in queue for queue in snapshot["queues"])
    nobody = stats(redis_url, "--json", "--queue", f"{keys.queue}-none")
    assert nobody.returncode == 0, nobody.stderr
    assert json.loads(nobody.stdout)["throughput_per_s"] is None
    table = stats(redis_url, "--queue", keys.queue, "--queue", other.queue)
    assert table.returncode == 0, table.stderr
    assert "jobs/s" in table.stdout
    assert "2.25" in table.stdout
    assert "throughput: 3.75 jobs/s" in table.stdout


def test_stats_throughput_is_unknown_when_no_live_worker_reports_it(
    redis_url: str, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    fake_heartbeat(redis_client, keys, f"{keys.queue}-old", time.time())
    result = stats(redis_url, "--json", "--queue", keys.queue)
    assert result.returncode == 0, result.stderr
    snapshot = json.loads(result.stdout)
    assert snapshot["throughput_per_s"] is None
    assert [worker["jobs_per_s"] for worker in snapshot["workers"]] == [None]
    table = stats(redis_url, "--queue", keys.queue)
    assert "throughput: unknown" in table.stdout


def test_stats_has_no_throughput_option_any_more(redis_url: str) -> None:
    result = stats(redis_url, "--no-throughput")
    assert result.returncode == 2


def test_stats_lists_a_live_worker_with_its_heartbeat_age(
    start_worker, redis_url: str, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    worker = start_worker("--concurrency", "3")
    wait_for(lambda: redis_client.exists(keys.worker(_worker_id(redis_client, keys))))
    result = stats(redis_url, "--json", "--queue", keys.queue)
    assert result.returncode == 0, result.stderr
    snapshot = json.loads(result.stdout)
    (live,) = snapshot["workers"]
    assert live["queues"] == [keys.queue]
    assert live["pid"] == worker.process.pid
    assert 0 <= live["heartbeat_age_s"] < 30
    assert live["jobs_per_s"] == 0.0  # idle
    assert snapshot["throughput_per_s"] == 0.0
    assert snapshot["queues"][0]["workers"] == 1
    table = stats(redis_url, "--queue", keys.queue)
    assert table.returncode == 0, table.stderr
    assert live["worker_id"] in table.stdout
    assert "heartbeat age" in table.stdout
    worker.signal()
    assert worker.wait() == 0


def test_stats_shows_the_jobs_per_s_a_real_worker_reports(
    start_worker, redis_url: str, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    worker = start_worker(env={"COROQ_HEARTBEAT_INTERVAL": "0.2", "COROQ_HEARTBEAT_TTL": "1.0"})
    with producer.Producer(redis_url, queue=keys.queue) as jobs:
        ids = [jobs.push("tests.add", n, 1) for n in range(5)]

    def reported() -> float:
        raw = redis_client.get(keys.worker(_worker_id(redis_client, keys)))
        return float(json.loads(raw)["jobs_per_s"]) if raw else 0.0

    done = [keys.job(job_id) for job_id in ids]
    wait_for(lambda: all(redis_client.hget(key, "status") == b"succeeded" for key in done))
    wait_for(lambda: reported() > 0)
    result = stats(redis_url, "--json", "--queue", keys.queue)
    assert result.returncode == 0, result.stderr
    snapshot = json.loads(result.stdout)
    (live,) = snapshot["workers"]
    assert live["pid"] == worker.process.pid
    assert live["jobs_per_s"] > 0
    assert snapshot["throughput_per_s"] == live["jobs_per_s"]
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
    result = stats(redis_url, "--json")
    assert result.returncode == 0, result.stderr
    names = [queue["queue"] for queue in json.loads(result.stdout)["queues"]]
    assert keys.queue in names


def test_stats_exits_1_when_redis_is_unreachable() -> None:
    result = stats("redis://127.0.0.1:1/0", "--json")
    assert result.returncode == 1
    assert "Redis at redis://127.0.0.1:1/0" in result.stderr
