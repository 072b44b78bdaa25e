"""The scripts that count the start of the jobs they move (start_job.lua): start_popped.lua,
sent behind a blocking pop, counts the start of a new, well-formed job at the head of the
processing list; take.lua counts the start of each well-formed job it takes. Everything else
is left to the worker's own checks (real redis-server: the scripts decode JSON with Redis's
cjson)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import redis

from producer.keys import QueueKeys
from producer.records import decode_record
from producer.scripts import (
    JobStart,
    MovedJobStarts,
    SyncScripts,
    requeue_call,
    start_call,
    start_popped_call,
    start_token,
    take_call,
)

WORKER = "w-1"
TTL = 600
PREFIX = "life-a-"
TASKS: dict[str, int | None] = {"echo": None, "limited": 7}


@pytest.fixture
def scripts(redis_client: redis.Redis) -> SyncScripts:
    return SyncScripts(redis_client)


def moved_starts(keys: QueueKeys) -> MovedJobStarts:
    return MovedJobStarts.of(
        keys,
        worker_id=WORKER,
        ttl=TTL,
        max_payload_bytes=1000,
        default_max_attempts=3,
        task_max_attempts=TASKS,
    )


def pop_start(scripts: SyncScripts, keys: QueueKeys, prefix: str = PREFIX) -> list[Any]:
    call = start_popped_call(
        keys,
        worker_id=WORKER,
        token=start_token(prefix),
        token_prefix=prefix,
        starts=moved_starts(keys),
    )
    return list(scripts.run(call))


def take(scripts: SyncScripts, keys: QueueKeys, most: int = 10, token: str = "") -> list[Any]:
    """The jobs take.lua moves, each as bytes or [bytes, id, attempt]."""
    call = take_call(keys, WORKER, 0, most, 100, moved_starts(keys), token or start_token(PREFIX))
    next_due, *taken = scripts.run(call)
    assert next_due == -1
    return list(taken)


def popped(client: redis.Redis, keys: QueueKeys, job: dict[str, Any] | bytes) -> bytes:
    """Put a job at the head of the processing list, where BLMOVE leaves what it took."""
    raw = job if isinstance(job, bytes) else orjson.dumps(job)
    client.lpush(keys.processing(WORKER), raw)
    return raw


def test_a_new_job_is_started_with_its_record_filled_in(
    redis_client: redis.Redis, scripts: SyncScripts, keys: QueueKeys
) -> None:
    popped(redis_client, keys, {"task": "echo", "id": "j-1", "args": ["hi"], "enqueued_at": 1.5})
    assert pop_start(scripts, keys) == [b"j-1", 1]
    found = decode_record(redis_client.hgetall(keys.job("j-1")))
    assert found is not None
    assert found["status"] == "running"
    assert found["attempts"] == 1
    assert found["max_attempts"] == 3  # the default: echo sets none of its own
    assert (found["worker"], found["task"], found["queue"]) == (WORKER, "echo", keys.queue)
    assert found["enqueued_at"] == 1.5
    assert found["started_at"] > 1_700_000_000  # the server's clock
    assert redis_client.hget(keys.job("j-1"), "start_token").decode().startswith(PREFIX)
    assert 0 < redis_client.ttl(keys.job("j-1")) <= TTL


def test_a_task_with_its_own_max_attempts_records_it(
    redis_client: redis.Redis, scripts: SyncScripts, keys: QueueKeys
) -> None:
    popped(redis_client, keys, {"task": "limited", "id": "j-2", "args": {"seconds": 1}})
    assert pop_start(scripts, keys) == [b"j-2", 1]
    assert redis_client.hget(keys.job("j-2"), "max_attempts") == b"7"


def test_a_job_this_consumer_started_already_is_left_alone(
    redis_client: redis.Redis, scripts: SyncScripts, keys: QueueKeys
) -> None:
    """A pop that timed out leaves an older job of this consumer at the head."""
    raw = popped(redis_client, keys, {"task": "echo", "id": "j-3"})
    start = JobStart("j-3", raw, "echo", 3, None)
    call = start_call(keys, [start], worker_id=WORKER, started_at=1.0, ttl=TTL, token_prefix=PREFIX)
    assert scripts.run(call) == [1]
    assert pop_start(scripts, keys) == []
    assert redis_client.hget(keys.job("j-3"), "attempts") == b"1"
    # A new life of the worker (another prefix) sees a job to start again: attempt 2.
    assert pop_start(scripts, keys, prefix="life-b-") == [b"j-3", 2]


@pytest.mark.parametrize(
    "payload",
    [
        {"task": "echo"},  # no id: the worker gives it one
        {"task": "echo", "id": "has space"},
        {"task": "echo", "id": 7},
        {"task": "echo", "id": "x" * 257},
        {"task": "nope", "id": "j"},  # not a task of this worker
        {"task": 5, "id": "j"},
        {"task": "echo", "id": "j", "max_attempts": 2},  # left to the envelope model
        {"task": "echo", "id": "j", "args": None},
        {"task": "echo", "id": "j", "args": "x"},
        {"task": "echo", "id": "j", "timeout": "5"},
        {"task": "echo", "id": "j", "timeout": 0},
        {"task": "echo", "id": "j", "enqueued_at": -1},
        {"task": "echo", "id": "j", "enqueued_at": True},
        {"task": "echo", "id": "j", "big": "x" * 2000},  # over max_payload_bytes
        b'{"task": "echo", "id": "j"',  # not JSON
        b'["echo"]',
        b"\xff\xfe{",
        b'{"task":"echo","id":"j","args":' + b"[" * 5000 + b"]" * 5000 + b"}",
    ],
    ids=lambda payload: repr(payload)[:40],
)
def test_anything_the_worker_might_judge_otherwise_is_left_to_it(
    redis_client: redis.Redis, scripts: SyncScripts, keys: QueueKeys, payload: Any
) -> None:
    raw = popped(redis_client, keys, payload)
    assert pop_start(scripts, keys) == []
    assert not redis_client.exists(keys.job("j"))
    assert redis_client.llen(keys.processing(WORKER)) == 1  # the job itself is untouched
    # take.lua judges alike: it moves the job and leaves its start to the worker.
    redis_client.delete(keys.processing(WORKER))
    redis_client.lpush(keys.ready, raw)
    assert take(scripts, keys) == [raw]
    assert not redis_client.exists(keys.job("j"))
    assert redis_client.lrange(keys.processing(WORKER), 0, -1) == [raw]


def test_take_counts_the_start_of_each_well_formed_job_it_takes(
    redis_client: redis.Redis, scripts: SyncScripts, keys: QueueKeys
) -> None:
    good = orjson.dumps({"task": "echo", "id": "t-1", "args": ["hi"], "enqueued_at": 2.5})
    no_id = orjson.dumps({"task": "echo", "args": []})
    limited = orjson.dumps({"task": "limited", "id": "t-2"})
    redis_client.lpush(keys.ready, good, no_id, limited)  # good is taken first
    taken = take(scripts, keys, most=2)
    assert taken == [[good, b"t-1", 1], no_id]
    assert redis_client.lrange(keys.ready, 0, -1) == [limited]  # at most 2
    found = decode_record(redis_client.hgetall(keys.job("t-1")))
    assert found is not None
    assert (found["status"], found["attempts"], found["max_attempts"]) == ("running", 1, 3)
    assert (found["worker"], found["task"], found["queue"]) == (WORKER, "echo", keys.queue)
    assert found["enqueued_at"] == 2.5
    assert found["started_at"] > 1_700_000_000  # the server's clock
    assert redis_client.hget(keys.job("t-1"), "start_token").decode().startswith(PREFIX)
    assert 0 < redis_client.ttl(keys.job("t-1")) <= TTL
    assert take(scripts, keys) == [[limited, b"t-2", 1]]
    assert redis_client.hget(keys.job("t-2"), "max_attempts") == b"7"


def test_a_late_reply_of_take_is_checked_without_counting_twice(
    redis_client: redis.Redis, scripts: SyncScripts, keys: QueueKeys
) -> None:
    """A take whose reply came too late to be trusted: the consumer sends start.lua with the
    take's token, which counts only the jobs the take did not count itself."""
    counted = orjson.dumps({"task": "echo", "id": "t-4"})
    uncounted = orjson.dumps({"task": "echo", "id": "t-5", "max_attempts": 2})
    redis_client.lpush(keys.ready, counted, uncounted)
    token = start_token(PREFIX)
    assert take(scripts, keys, token=token) == [[counted, b"t-4", 1], uncounted]
    starts = [
        JobStart("t-4", counted, "echo", 3, None),
        JobStart("t-5", uncounted, "echo", 2, None),
    ]
    call = start_call(keys, starts, worker_id=WORKER, started_at=1.0, ttl=TTL, token=token)
    assert scripts.run(call) == [1, 1]
    assert redis_client.hget(keys.job("t-4"), "attempts") == b"1"


def test_a_late_take_of_a_job_recovered_meanwhile_takes_its_count_back(
    redis_client: redis.Redis, scripts: SyncScripts, keys: QueueKeys
) -> None:
    """The take's reply came after the job was recovered to the ready list: the job never
    started here, so the check made with the take's token undoes the take's count."""
    raw = orjson.dumps({"task": "echo", "id": "t-6"})
    redis_client.lpush(keys.ready, raw)
    token = start_token(PREFIX)
    assert take(scripts, keys, token=token) == [[raw, b"t-6", 1]]
    redis_client.lmove(keys.processing(WORKER), keys.ready, "LEFT", "RIGHT")  # recovered
    start = JobStart("t-6", raw, "echo", 3, None)
    call = start_call(keys, [start], worker_id=WORKER, started_at=1.0, ttl=TTL, token=token)
    assert scripts.run(call) == [0]  # not held
    assert redis_client.hget(keys.job("t-6"), "attempts") == b"0"
    assert redis_client.hget(keys.job("t-6"), "status") == b"queued"
    assert scripts.run(call) == [0]  # sent again after a lost reply: nothing more
    assert redis_client.hget(keys.job("t-6"), "attempts") == b"0"
    # Taken again, it starts its first attempt.
    assert take(scripts, keys) == [[raw, b"t-6", 1]]


def test_a_late_take_leaves_the_count_of_a_later_start_alone(
    redis_client: redis.Redis, scripts: SyncScripts, keys: QueueKeys
) -> None:
    """Recovered and started again by another take before the late reply came: that start
    replaced the token, and the late check takes nothing back."""
    raw = orjson.dumps({"task": "echo", "id": "t-7"})
    redis_client.lpush(keys.ready, raw)
    late_token = start_token(PREFIX)
    assert take(scripts, keys, token=late_token) == [[raw, b"t-7", 1]]
    redis_client.lmove(keys.processing(WORKER), keys.ready, "LEFT", "RIGHT")  # recovered
    assert take(scripts, keys) == [[raw, b"t-7", 2]]  # started again
    redis_client.lrem(keys.processing(WORKER), 1, raw)  # and finished
    start = JobStart("t-7", raw, "echo", 3, None)
    call = start_call(keys, [start], worker_id=WORKER, started_at=1.0, ttl=TTL, token=late_token)
    assert scripts.run(call) == [0]
    assert redis_client.hget(keys.job("t-7"), "attempts") == b"2"


def test_a_job_given_back_unrun_loses_only_the_start_its_take_counted(
    redis_client: redis.Redis, scripts: SyncScripts, keys: QueueKeys
) -> None:
    """A take whose reply was lost (or came just before a shutdown): the consumer puts its
    jobs back with the take's token, which takes back exactly the starts that take counted."""
    counted = orjson.dumps({"task": "echo", "id": "t-8"})
    other = orjson.dumps({"task": "echo", "id": "t-9", "max_attempts": 2})  # not vouched for
    redis_client.hset(keys.job("t-9"), mapping={"attempts": 1, "start_token": "earlier"})
    redis_client.lpush(keys.ready, counted, other)
    token = start_token(PREFIX)
    assert take(scripts, keys, token=token) == [[counted, b"t-8", 1], other]
    for job_id, raw in (("t-8", counted), ("t-9", other)):
        call = requeue_call(keys, job_id, worker_id=WORKER, raw=raw, start_tokens=[token])
        assert scripts.run(call) == 1
    assert redis_client.hget(keys.job("t-8"), "attempts") == b"0"
    assert redis_client.hget(keys.job("t-9"), "attempts") == b"1"  # an earlier, real start
    assert redis_client.hget(keys.job("t-8"), "status") == b"queued"
    assert redis_client.lrange(keys.ready, 0, -1) == [counted, other]
    assert redis_client.llen(keys.processing(WORKER)) == 0


def test_take_counts_every_start_of_a_job_that_comes_back(
    redis_client: redis.Redis, scripts: SyncScripts, keys: QueueKeys
) -> None:
    """A job retried or recovered to the ready list starts a new attempt when taken again."""
    raw = orjson.dumps({"task": "echo", "id": "t-3"})
    redis_client.lpush(keys.ready, raw)
    assert take(scripts, keys) == [[raw, b"t-3", 1]]
    redis_client.lmove(keys.processing(WORKER), keys.ready, "LEFT", "RIGHT")
    assert take(scripts, keys) == [[raw, b"t-3", 2]]


def test_an_empty_processing_list_starts_nothing(scripts: SyncScripts, keys: QueueKeys) -> None:
    assert pop_start(scripts, keys) == []
