"""`PipelinedScripts`: calls from many coroutines sent together, acknowledgements of one worker
merged into one script call, and each caller given its own result (real redis-server)."""

from __future__ import annotations

import asyncio

import orjson
import redis
import redis.asyncio

from producer.keys import QueueKeys
from producer.scripts import PipelinedScripts, ScriptCall, merge_calls
from worker.jobs.protocol import (
    WORKER_SCRIPTS,
    JobLinks,
    JobStart,
    QueueProtocol,
    start_token,
    started,
)
from worker.jobs.queues import SyncQueue

WORKER = "w-1"
TTL = 600


def raw_job(job_id: str) -> bytes:
    return orjson.dumps({"task": "echo", "id": job_id, "args": []})


def ack(protocol: QueueProtocol, job_id: str, *, attempt: int = 1) -> ScriptCall:
    return protocol.ack(job_id, raw_job(job_id), orjson.dumps({"job": job_id}), attempt)


def test_merge_calls_groups_acks_by_processing_list_and_keeps_other_calls_apart(
    keys: QueueKeys,
) -> None:
    ours, theirs = QueueProtocol(keys, WORKER, TTL), QueueProtocol(keys, "w-2", TTL)
    assert WORKER_SCRIPTS.job_batch_scripts == {"ack"}
    calls = [
        ack(ours, "a"),
        ours.requeue("r", raw_job("r"), undo_start=True),
        ack(theirs, "b"),
        ack(ours, "c"),
    ]
    commands, places = merge_calls(calls, WORKER_SCRIPTS.job_batch_scripts)
    assert [command.script for command in commands] == ["ack", "requeue", "ack"]
    first = commands[0]
    assert first.keys == [keys.processing(WORKER), keys.settling, keys.job("a"), keys.job("c")]
    assert first.args == [*calls[0].args, *calls[3].args]
    assert commands[1] is calls[1]
    assert commands[2].keys == [keys.processing("w-2"), keys.settling, keys.job("b")]
    assert places == [(0, 0), (1, None), (2, 0), (0, 1)]
    # The calls themselves are left as they were (a call may be sent again after NOSCRIPT).
    assert calls[0].keys == [keys.processing(WORKER), keys.settling, keys.job("a")]
    # A library without job-batch scripts sends every call as it is.
    assert merge_calls(calls, frozenset()) == (calls, [(i, None) for i in range(4)])


def test_a_group_member_brings_more_keys_but_one_result(keys: QueueKeys) -> None:
    """Each merged ack has one result, however many keys it brings (a group's, too)."""
    ours = QueueProtocol(keys, WORKER, TTL)
    result = orjson.dumps(1)
    calls = [
        ours.ack("a", raw_job("a"), result, 1, JobLinks("g1")),
        ours.ack("b", raw_job("b"), result, 1),
        ours.ack("c", raw_job("c"), result, 1, JobLinks("g1")),
    ]
    [command], places = merge_calls(calls, WORKER_SCRIPTS.job_batch_scripts)
    assert len(command.keys) == 2 + 3 + 1 + 3
    assert places == [(0, 0), (0, 1), (0, 2)]


def test_acks_sent_together_are_each_checked_and_answered_on_their_own(
    redis_url: str, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    protocol = QueueProtocol(keys, WORKER, TTL)
    held = [f"j{i}" for i in range(20)]
    redis_client.lpush(keys.processing(WORKER), *(raw_job(job_id) for job_id in held))
    starts = [JobStart(job_id, raw_job(job_id), "echo", 3, None) for job_id in held]
    reply = SyncQueue(protocol, redis_client).run(protocol.start(starts, start_token("t-"), None))
    assert [found.attempt for found in started(reply)] == [1] * len(held)

    async def acknowledge() -> list[object]:
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            scripts = PipelinedScripts(client, WORKER_SCRIPTS)
            calls = [ack(protocol, job_id) for job_id in held]
            calls.append(ack(protocol, "never-taken"))  # not in the processing list
            calls.append(ack(protocol, "j3", attempt=7))  # a stale attempt: fenced off
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
