"""`PipelinedScripts`: calls from many coroutines sent together, acknowledgements of one worker
merged into one script call, and each caller given its own result (real redis-server)."""

from __future__ import annotations

import asyncio

import orjson
import redis
import redis.asyncio

from producer.keys import QueueKeys
from producer.scripts import (
    JobStart,
    PipelinedScripts,
    ScriptCall,
    SyncScripts,
    ack_call,
    merge_calls,
    requeue_call,
    start_call,
)

WORKER = "w-1"
TTL = 600


def raw_job(job_id: str) -> bytes:
    return orjson.dumps({"task": "echo", "id": job_id, "args": []})


def ack(keys: QueueKeys, job_id: str, *, worker_id: str = WORKER, attempt: int = 1) -> ScriptCall:
    return ack_call(
        keys,
        job_id,
        worker_id=worker_id,
        raw=raw_job(job_id),
        result_json=orjson.dumps({"job": job_id}),
        finished_at=1_700_000_010.0,
        ttl=TTL,
        attempt=attempt,
    )


def test_merge_calls_groups_acks_by_processing_list_and_keeps_other_calls_apart(
    keys: QueueKeys,
) -> None:
    calls = [
        ack(keys, "a"),
        requeue_call(keys, "r", worker_id=WORKER, raw=raw_job("r")),
        ack(keys, "b", worker_id="w-2"),
        ack(keys, "c"),
    ]
    commands, places = merge_calls(calls)
    assert [command.script for command in commands] == ["ack", "requeue", "ack"]
    first = commands[0]
    assert first.keys == [keys.processing(WORKER), keys.job("a"), keys.job("c")]
    assert first.args == [*calls[0].args, *calls[3].args]
    assert commands[2].keys == [keys.processing("w-2"), keys.job("b")]
    assert places == [(0, 0), (1, None), (2, 0), (0, 1)]
    # The calls themselves are left as they were (a call may be sent again after NOSCRIPT).
    assert calls[0].keys == [keys.processing(WORKER), keys.job("a")]


def test_acks_sent_together_are_each_checked_and_answered_on_their_own(
    redis_url: str, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    held = [f"j{i}" for i in range(20)]
    for job_id in held:
        redis_client.lpush(keys.processing(WORKER), raw_job(job_id))
    starts = [JobStart(job_id, raw_job(job_id), "echo", 3, None) for job_id in held]
    call = start_call(keys, starts, worker_id=WORKER, started_at=1_700_000_000.0, ttl=TTL)
    assert SyncScripts(redis_client).run(call) == [1] * len(held)

    async def acknowledge() -> list[object]:
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            scripts = PipelinedScripts(client)
            calls = [ack(keys, job_id) for job_id in held]
            calls.append(ack(keys, "never-taken"))  # not in the processing list
            calls.append(ack(keys, "j3", attempt=7))  # a stale attempt: fenced off
            return list(await asyncio.gather(*(scripts.run(c) for c in calls)))
        finally:
            await client.aclose()

    # j3's first ack comes first and succeeds; its stale second one finds it gone.
    assert asyncio.run(acknowledge()) == [1] * len(held) + [0, 0]
    assert redis_client.llen(keys.processing(WORKER)) == 0
    for job_id in held:
        record = redis_client.hgetall(keys.job(job_id))
        assert record[b"status"] == b"succeeded"
        assert orjson.loads(record[b"result"]) == {"job": job_id}
    assert not redis_client.exists(keys.job("never-taken"))
