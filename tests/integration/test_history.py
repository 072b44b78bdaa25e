"""Each queue's throughput history, written by a real worker process (`python -m worker`) and
read back with `producer.history.read_history`; and an idle worker writes nothing to it."""

from __future__ import annotations

import time

import orjson
import redis

from producer import Producer
from producer.history import HISTORY_TTL_S, MinuteCounts, read_history
from producer.keys import QueueKeys
from tests.conftest import wait_for
from tests.integration.helpers import worker_id
from worker.local_redis import RedisServerProcess

FAST_BEATS = {"COROQ_HEARTBEAT_INTERVAL": "0.5", "COROQ_HEARTBEAT_TTL": "1.5"}
# The commands the history script sends; nothing else an idle worker does sends them.
HISTORY_COMMANDS = ("hincrby", "hkeys", "expire")


def history_now(client: redis.Redis, keys: QueueKeys) -> tuple[float, list[MinuteCounts]]:
    """When it was read, and the queue's history then."""
    now = time.time()
    return now, read_history(client, [keys], now=now)[keys.queue]


def totals(history: list[MinuteCounts]) -> tuple[int, int]:
    return sum(m.ok for m in history), sum(m.failed for m in history)


def history_command_calls(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name: stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in HISTORY_COMMANDS}


def beat_at(client: redis.Redis, keys: QueueKeys, worker: str) -> float:
    value = client.get(keys.worker(worker))
    return float(orjson.loads(value)["beat_at"]) if value else 0.0


def test_a_worker_writes_what_ended_into_the_history_and_nothing_while_idle(
    start_worker, private_redis: RedisServerProcess, keys: QueueKeys
) -> None:
    client = redis.Redis.from_url(private_redis.url)
    worker = start_worker(env={"COROQ_REDIS_URL": private_redis.url, **FAST_BEATS})
    started = time.time()
    with Producer(private_redis.url, queue=keys.queue) as producer:
        for n in range(5):
            producer.push("tests.add", n, 1)
        for _ in range(2):
            producer.push("tests.boom", "for the history", _max_attempts=1)
        producer.push("tests.flaky", 2, _max_attempts=3)  # a retry first: counted once, ok

    def all_counted() -> tuple[float, list[MinuteCounts]] | None:
        read_at, found = history_now(client, keys)
        return (read_at, found) if totals(found) == (6, 2) else None

    read_at, history = wait_for(all_counted)
    assert len(history) == 60
    assert history[-1].minute_start <= read_at < history[-1].minute_start + 60
    # The jobs ended in the minute under way (or in the one before, if it turned meanwhile).
    counted = [m for m in history if m.ok or m.failed]
    assert counted
    assert all(m.minute_start >= max(started // 60 * 60, history[-2].minute_start) for m in counted)
    assert 0 < client.ttl(keys.history) <= HISTORY_TTL_S

    # Idle: several beats go by; none writes to the history.
    calls = history_command_calls(client)
    fields = client.hgetall(keys.history)
    ttl_ms = client.pttl(keys.history)
    beaten = beat_at(client, keys, worker_id(worker))
    wait_for(lambda: beat_at(client, keys, worker_id(worker)) > beaten + 2.0, timeout=10)
    assert history_command_calls(client) == calls
    assert client.hgetall(keys.history) == fields
    assert client.pttl(keys.history) < ttl_ms - 1500  # counting down, never set again
    client.close()
