"""The Lua outcome scripts (producer/lua), run against the real redis-server and against
fakeredis (whose Lua support the fast tests rely on)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import redis

from producer.client import Producer
from producer.keys import QueueKeys
from producer.scripts import (
    JobStart,
    SyncScripts,
    ack_call,
    adopt_call,
    dead_call,
    requeue_call,
    start_call,
)

WORKER = "w-1"
TTL = 600


@pytest.fixture(params=["redis-server", "fakeredis"])
def client(request: pytest.FixtureRequest) -> redis.Redis:
    name = "redis_client" if request.param == "redis-server" else "fake_redis"
    return request.getfixturevalue(name)


@pytest.fixture
def scripts(client: redis.Redis) -> SyncScripts:
    return SyncScripts(client)


def raw_job(job_id: str, **extra: Any) -> bytes:
    return orjson.dumps({"task": "echo", "id": job_id, "args": [], **extra})


def start(
    client: redis.Redis, scripts: SyncScripts, keys: QueueKeys, job_id: str, **options: Any
) -> int:
    """Start job `job_id` as held by WORKER (held for the call only, when it was not)."""
    raw = raw_job(job_id)
    processing_list = keys.processing(options.get("worker_id", WORKER))
    borrowed = raw not in client.lrange(processing_list, 0, -1)
    if borrowed:
        client.lpush(processing_list, raw)
    job = JobStart(job_id, raw, "echo", options.get("max_attempts", 3), options.get("enqueued_at"))
    call = start_call(
        keys,
        [job],
        worker_id=options.get("worker_id", WORKER),
        started_at=options.get("started_at", 1_700_000_000.5),
        ttl=TTL,
    )
    [attempt] = scripts.run(call)
    if borrowed:
        client.lrem(processing_list, 1, raw)
    return int(attempt)


def test_start_records_a_batch_in_one_call(
    client: redis.Redis, scripts: SyncScripts, keys: QueueKeys
) -> None:
    start(client, scripts, keys, "j2")
    client.rpush(keys.processing(WORKER), raw_job("j1"), raw_job("j2"))
    batch = [
        JobStart("j1", raw_job("j1"), "echo", 3, None),
        JobStart("j2", raw_job("j2"), "other", 5, 1_700_000_000.25),
    ]
    call = start_call(keys, batch, worker_id=WORKER, started_at=1_700_000_001.0, ttl=TTL)
    assert [int(n) for n in scripts.run(call)] == [1, 2]
    assert record(client, keys, "j1")["max_attempts"] == "3"
    assert "enqueued_at" not in record(client, keys, "j1")
    second = record(client, keys, "j2")
    assert (second["task"], second["max_attempts"], second["attempts"]) == ("other", "5", "2")
    assert float(second["enqueued_at"]) == 1_700_000_000.25
    assert 0 < client.ttl(keys.job("j2")) <= TTL


def record(client: redis.Redis, keys: QueueKeys, job_id: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in client.hgetall(keys.job(job_id)).items()}


def processing(client: redis.Redis, keys: QueueKeys) -> list[bytes]:
    return client.lrange(keys.processing(WORKER), 0, -1)


def test_start_counts_every_attempt_and_records_the_run(
    client: redis.Redis, scripts: SyncScripts, keys: QueueKeys
) -> None:
    assert start(client, scripts, keys, "j1", enqueued_at=1_699_999_999.0) == 1
    assert start(client, scripts, keys, "j1", worker_id="w-2") == 2
    fields = record(client, keys, "j1")
    assert fields["attempts"] == "2"
    assert fields["status"] == "running"
    assert fields["worker"] == "w-2"
    assert fields["task"] == "echo"
    assert fields["queue"] == keys.queue
    assert fields["max_attempts"] == "3"
    assert float(fields["started_at"]) == 1_700_000_000.5
    assert float(fields["enqueued_at"]) == 1_699_999_999.0
    assert 0 < client.ttl(keys.job("j1")) <= TTL


def test_start_without_an_enqueue_time_records_none(
    client: redis.Redis, scripts: SyncScripts, keys: QueueKeys
) -> None:
    start(client, scripts, keys, "j1")
    assert "enqueued_at" not in record(client, keys, "j1")


def ack(
    scripts: SyncScripts,
    keys: QueueKeys,
    job_id: str,
    raw: bytes,
    result: Any,
    attempt: int | None = 1,
) -> int:
    call = ack_call(
        keys,
        job_id,
        worker_id=WORKER,
        raw=raw,
        result_json=orjson.dumps(result),
        finished_at=1_700_000_010.0,
        ttl=TTL,
        attempt=attempt,
    )
    [acked] = scripts.run(call)
    return int(acked)


def test_ack_removes_exactly_one_copy_and_records_the_result(
    client: redis.Redis, scripts: SyncScripts, keys: QueueKeys
) -> None:
    raw, other = raw_job("j1"), raw_job("j2")
    client.rpush(keys.processing(WORKER), raw, other, raw)
    start(client, scripts, keys, "j1")
    client.hset(keys.job("j1"), mapping={"reason": "timeout", "error": "e", "traceback": "t"})
    assert ack(scripts, keys, "j1", raw, {"sum": 5}) == 1
    assert sorted(processing(client, keys)) == sorted([raw, other])
    fields = record(client, keys, "j1")
    assert fields["status"] == "succeeded"
    assert orjson.loads(fields["result"]) == {"sum": 5}
    assert float(fields["finished_at"]) == 1_700_000_010.0
    assert not {"reason", "error", "traceback"} & fields.keys()
    assert 0 < client.ttl(keys.job("j1")) <= TTL


def test_ack_of_a_job_no_longer_held_records_nothing(
    client: redis.Redis, scripts: SyncScripts, keys: QueueKeys
) -> None:
    raw = raw_job("j1")
    start(client, scripts, keys, "j1")
    before = record(client, keys, "j1")
    # The job was recovered by another worker: this worker's processing list lost it.
    assert ack(scripts, keys, "j1", raw, "late") == 0
    assert record(client, keys, "j1") == before
    assert processing(client, keys) == []


def test_ack_of_an_attempt_that_is_no_longer_the_latest_records_nothing(
    client: redis.Redis, scripts: SyncScripts, keys: QueueKeys
) -> None:
    """Fencing by attempt: the job came back to this worker's list after a recovery, and a
    newer attempt started; the stale attempt's ack must not take the newer one's place."""
    raw = raw_job("j1")
    client.rpush(keys.processing(WORKER), raw)
    start(client, scripts, keys, "j1")
    start(client, scripts, keys, "j1")
    assert ack(scripts, keys, "j1", raw, "stale", attempt=1) == 0
    assert processing(client, keys) == [raw]
    assert record(client, keys, "j1")["status"] == "running"
    assert ack(scripts, keys, "j1", raw, "fresh", attempt=2) == 1


def test_ack_without_a_record_still_acknowledges(
    client: redis.Redis, scripts: SyncScripts, keys: QueueKeys
) -> None:
    raw = raw_job("j1")
    client.rpush(keys.processing(WORKER), raw)
    assert ack(scripts, keys, "j1", raw, "ok", attempt=3) == 1
    assert processing(client, keys) == []


def test_ack_only_matches_the_exact_raw_bytes(
    client: redis.Redis, scripts: SyncScripts, keys: QueueKeys
) -> None:
    held = raw_job("j1")
    client.rpush(keys.processing(WORKER), held)
    assert ack(scripts, keys, "j1", raw_job("j1", note="changed"), 1) == 0
    assert processing(client, keys) == [held]


def dead(scripts: SyncScripts, keys: QueueKeys, job_id: str, raw: bytes) -> int:
    entry = orjson.dumps({"id": job_id, "reason": "handler_error", "raw": raw.decode()})
    call = dead_call(
        keys,
        job_id,
        worker_id=WORKER,
        raw=raw,
        entry_json=entry,
        reason="handler_error",
        error="RuntimeError: boom",
        traceback="Traceback ...",
        finished_at=1_700_000_020.0,
        ttl=TTL,
        attempt=1,
    )
    return int(scripts.run(call))


def test_dead_moves_the_entry_to_the_dead_list_and_records_why(
    client: redis.Redis, scripts: SyncScripts, keys: QueueKeys
) -> None:
    raw = raw_job("j1")
    client.rpush(keys.processing(WORKER), raw)
    start(client, scripts, keys, "j1")
    assert dead(scripts, keys, "j1", raw) == 1
    assert processing(client, keys) == []
    (entry,) = client.lrange(keys.dead, 0, -1)
    assert orjson.loads(entry) == {"id": "j1", "reason": "handler_error", "raw": raw.decode()}
    fields = record(client, keys, "j1")
    assert fields["status"] == "dead"
    assert fields["reason"] == "handler_error"
    assert fields["error"] == "RuntimeError: boom"
    assert fields["traceback"] == "Traceback ..."
    assert float(fields["finished_at"]) == 1_700_000_020.0
    assert 0 < client.ttl(keys.job("j1")) <= TTL


def test_dead_of_a_job_no_longer_held_changes_nothing(
    client: redis.Redis, scripts: SyncScripts, keys: QueueKeys
) -> None:
    assert dead(scripts, keys, "j1", raw_job("j1")) == 0
    assert client.llen(keys.dead) == 0
    assert not client.exists(keys.job("j1"))


def requeue(scripts: SyncScripts, keys: QueueKeys, job_id: str, raw: bytes) -> int:
    return int(scripts.run(requeue_call(keys, job_id, worker_id=WORKER, raw=raw)))


def test_requeue_puts_the_job_at_the_consuming_end_without_counting_the_attempt(
    client: redis.Redis, scripts: SyncScripts, keys: QueueKeys
) -> None:
    raw = raw_job("j1")
    client.lpush(keys.ready, b"waiting-1", b"waiting-2")
    client.rpush(keys.processing(WORKER), raw)
    start(client, scripts, keys, "j1")
    start(client, scripts, keys, "j1")
    assert requeue(scripts, keys, "j1", raw) == 1
    assert processing(client, keys) == []
    assert client.rpop(keys.ready) == raw
    assert client.lrange(keys.ready, 0, -1) == [b"waiting-2", b"waiting-1"]
    fields = record(client, keys, "j1")
    assert fields["attempts"] == "1"
    assert fields["status"] == "queued"


def test_requeue_never_takes_attempts_below_zero_nor_creates_a_record(
    client: redis.Redis, scripts: SyncScripts, keys: QueueKeys
) -> None:
    raw = raw_job("j1")
    client.rpush(keys.processing(WORKER), raw, raw)
    assert requeue(scripts, keys, "j1", raw) == 1
    assert not client.exists(keys.job("j1"))
    client.hset(keys.job("j1"), "status", "running")
    assert requeue(scripts, keys, "j1", raw) == 1
    assert record(client, keys, "j1") == {"status": "queued"}
    assert client.llen(keys.ready) == 2


def test_requeue_of_a_job_no_longer_held_changes_nothing(
    client: redis.Redis, scripts: SyncScripts, keys: QueueKeys
) -> None:
    start(client, scripts, keys, "j1")
    assert requeue(scripts, keys, "j1", raw_job("j1")) == 0
    assert client.llen(keys.ready) == 0
    assert record(client, keys, "j1")["attempts"] == "1"


def test_adopt_replaces_the_raw_job_with_the_stamped_one(
    client: redis.Redis, scripts: SyncScripts, keys: QueueKeys
) -> None:
    raw = orjson.dumps({"task": "echo"})
    stamped = raw_job("new-id")
    client.rpush(keys.processing(WORKER), b"other", raw)
    assert scripts.run(adopt_call(keys, worker_id=WORKER, raw=raw, stamped=stamped)) == 1
    assert sorted(processing(client, keys)) == sorted([b"other", stamped])


def test_adopt_of_a_job_no_longer_held_changes_nothing(
    client: redis.Redis, scripts: SyncScripts, keys: QueueKeys
) -> None:
    raw = orjson.dumps({"task": "echo"})
    assert scripts.run(adopt_call(keys, worker_id=WORKER, raw=raw, stamped=raw_job("x"))) == 0
    assert processing(client, keys) == []


def test_the_record_of_an_acknowledged_job_reads_back_through_the_producer(
    client: redis.Redis, scripts: SyncScripts, keys: QueueKeys
) -> None:
    raw = raw_job("j1")
    client.rpush(keys.processing(WORKER), raw)
    start(client, scripts, keys, "j1", enqueued_at=1_699_999_999.0)
    ack(scripts, keys, "j1", raw, [1, "two"])
    status = Producer(client=client, queue=keys.queue).status("j1")
    assert status is not None
    assert status["status"] == "succeeded"
    assert status["attempts"] == 1
    assert status["max_attempts"] == 3
    assert status["result"] == [1, "two"]
    assert status["enqueued_at"] == 1_699_999_999.0
    assert status["started_at"] == 1_700_000_000.5


def test_a_start_sent_again_after_a_lost_reply_counts_once(
    client: redis.Redis, scripts: SyncScripts, keys: QueueKeys
) -> None:
    client.rpush(keys.processing(WORKER), raw_job("j1"))
    job = JobStart("j1", raw_job("j1"), "echo", 3, None)
    call = start_call(keys, [job], worker_id=WORKER, started_at=1.0, ttl=TTL)
    assert [int(n) for n in scripts.run(call)] == [1]
    assert [int(n) for n in scripts.run(call)] == [1]  # the same call, retried
    again = start_call(keys, [job], worker_id=WORKER, started_at=2.0, ttl=TTL)
    assert [int(n) for n in scripts.run(again)] == [2]  # a new start counts


def test_a_job_no_longer_held_is_not_started_and_its_record_is_left_alone(
    client: redis.Redis, scripts: SyncScripts, keys: QueueKeys
) -> None:
    """A pop whose reply came late: the job was recovered, run and finished elsewhere."""
    client.hset(keys.job("j1"), mapping={"status": "succeeded", "attempts": 1, "worker": "w-2"})
    client.rpush(keys.processing(WORKER), raw_job("j2"))
    batch = [
        JobStart("j1", raw_job("j1"), "echo", 3, None),
        JobStart("j2", raw_job("j2"), "echo", 3, None),
    ]
    call = start_call(keys, batch, worker_id=WORKER, started_at=1.0, ttl=TTL)
    assert [int(n) for n in scripts.run(call)] == [0, 1]
    assert record(client, keys, "j1") == {"status": "succeeded", "attempts": "1", "worker": "w-2"}
