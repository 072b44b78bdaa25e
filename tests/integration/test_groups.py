"""Groups with a callback (DESIGN §6, docs/futures.md#groups), against the real worker: the
callback is pushed once, after every member is final, with the members' outcomes in order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import redis

from producer import AsyncProducer, InvalidJob, JobFailed, Producer, call
from producer.keys import QueueKeys
from tests.conftest import WorkerProcess, wait_for


def test_the_callback_gets_every_outcome_in_order(
    producer: Producer,
    redis_client: redis.Redis,
    keys: QueueKeys,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    start_worker("--concurrency", "4")
    group = producer.group(
        [
            call("tests.add", 1, 2, _id="m1"),
            call("tests.boom", "kaput", _id="m2", _max_attempts=1),
            call("tests.nap", 0.3, "late", _id="m3"),
        ],
        then=call("tests.collect", title="weekly", _id="report"),
    )
    outcome = group.callback.result(timeout=30)
    assert outcome["title"] == "weekly"
    assert [r["id"] for r in outcome["results"]] == ["m1", "m2", "m3"]
    first, dead, late = outcome["results"]
    assert first == {"id": "m1", "status": "succeeded", "result": 3}
    assert dead["status"] == "dead"
    assert "kaput" in dead["error"]
    assert late == {"id": "m3", "status": "succeeded", "result": "late"}
    assert group.members[0].result(timeout=5) == 3
    with pytest.raises(JobFailed):
        group.members[1].result(timeout=5)
    assert redis_client.hget(keys.group(group.id), "left") == b"0"
    assert redis_client.hget(keys.job("report"), "attempts") == b"1"


def test_a_cancelled_member_counts_as_final(
    producer: Producer, keys: QueueKeys, start_worker: Callable[..., WorkerProcess]
) -> None:
    group = producer.group(
        [call("tests.add", 1, 1, _id="a"), call("tests.nap", 60, _id="b")],
        then=call("tests.collect", "with a cancel"),
    )
    assert producer.cancel("b").outcome.value == "cancelled"  # not started: no worker yet
    start_worker()
    outcome = group.callback.result(timeout=30)
    statuses = [r["status"] for r in outcome["results"]]
    assert statuses == ["succeeded", "cancelled"]
    assert group.members[1].cancelled()


def test_a_running_member_cancelled_counts_too(
    producer: Producer,
    redis_client: redis.Redis,
    keys: QueueKeys,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    start_worker()
    group = producer.group([call("tests.nap", 60, _id="long")], then=call("tests.collect", "x"))
    wait_for(lambda: redis_client.hget(keys.job("long"), "status") == b"running")
    producer.cancel("long")
    outcome = group.callback.result(timeout=30)
    assert outcome["results"] == [
        {"id": "long", "status": "cancelled", "error": "cancelled by request"}
    ]


def test_the_async_group(
    redis_url: str, keys: QueueKeys, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker("--concurrency", "20")

    async def scenario() -> tuple[list[Any], Any]:
        async with AsyncProducer(redis_url, queue=keys.queue) as p:
            group = await p.group(
                [call("tests.add", n, n) for n in range(50)], then=call("tests.collect", "sums")
            )
            members = await asyncio.gather(*group.members)
            return members, await group.callback

    members, outcome = asyncio.run(scenario())
    assert members == [2 * n for n in range(50)]
    assert [r["result"] for r in outcome["results"]] == members


@pytest.mark.parametrize(
    ("calls", "then", "message"),
    [
        ([], call("tests.collect", "x"), "at least one member"),
        ([call("tests.add", 1, 1)], call("tests.collect", "x", _queue="other"), "share the"),
        ([call("tests.add", 1, 1, _id="a"), call("tests.add", 1, 1, _id="a")],
         call("tests.collect", "x"), "same id"),
        (["tests.add"], call("tests.collect", "x"), "not a call"),
        ([call("tests.add", 1, 1)], call("tests.collect", title="x", results=[]),
         "already have 'results'"),
    ],
)  # fmt: skip
def test_bad_groups_are_refused_and_nothing_is_pushed(
    producer: Producer,
    redis_client: redis.Redis,
    keys: QueueKeys,
    calls: list[Any],
    then: Any,
    message: str,
) -> None:
    with pytest.raises(InvalidJob, match=message):
        producer.group(calls, then=then)
    assert redis_client.llen(keys.ready) == 0
    assert not list(redis_client.scan_iter(match=f"coroq:{{{keys.queue}}}:group:*"))


def test_a_non_json_argument_is_refused_at_the_call() -> None:
    with pytest.raises(InvalidJob, match="not JSON-serialisable"):
        call("tests.add", object())
