"""start_popped.lua: the script sent behind a blocking pop counts the start of a new, well-formed
job at the head of the processing list, and leaves everything else to the worker's own checks
(real redis-server: the script decodes JSON with Redis's cjson)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import redis

from producer.keys import QueueKeys
from producer.records import decode_record
from producer.scripts import JobStart, SyncScripts, start_call, start_popped_call

WORKER = "w-1"
TTL = 600
PREFIX = "life-a-"
TASKS: dict[str, int | None] = {"echo": None, "limited": 7}


@pytest.fixture
def scripts(redis_client: redis.Redis) -> SyncScripts:
    return SyncScripts(redis_client)


def pop_start(scripts: SyncScripts, keys: QueueKeys, prefix: str = PREFIX) -> list[Any]:
    call = start_popped_call(
        keys,
        worker_id=WORKER,
        ttl=TTL,
        token_prefix=prefix,
        max_payload_bytes=1000,
        default_max_attempts=3,
        task_max_attempts=TASKS,
    )
    return list(scripts.run(call))


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
    popped(redis_client, keys, payload)
    assert pop_start(scripts, keys) == []
    assert not redis_client.exists(keys.job("j"))
    assert redis_client.llen(keys.processing(WORKER)) == 1  # the job itself is untouched


def test_an_empty_processing_list_starts_nothing(scripts: SyncScripts, keys: QueueKeys) -> None:
    assert pop_start(scripts, keys) == []
