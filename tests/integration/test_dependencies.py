"""Dependencies (DESIGN §6, docs/futures.md#dependencies), against the real worker: a job
pushed with `_after` is held, holding no slot, until every job it waits for has succeeded;
a dead or cancelled one cancels it (and what waits for it), naming itself in the reason."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable

import pytest
import redis

from producer import AsyncProducer, InvalidJob, Producer, call
from producer.keys import QueueKeys
from tests.conftest import WorkerProcess, wait_for


def test_a_chain_runs_in_order(
    producer: Producer, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker("--concurrency", "4")
    first = producer.submit("tests.nap", 0.3, "first")
    second = producer.submit("tests.nap", 0.1, "second", _after=[first])
    third = producer.submit("tests.add", 1, 2, _after=[second.id])
    assert third.result(timeout=30) == 3
    assert second.result(timeout=5) == "second"
    records = [producer.status(job.id) for job in (first, second, third)]
    assert records[0]
    assert records[1]
    assert records[2]
    assert records[1]["started_at"] >= records[0]["finished_at"]
    assert records[2]["started_at"] >= records[1]["finished_at"]
    assert records[2]["after"] == [second.id]


def test_a_held_job_waits_in_its_record_and_holds_no_slot(
    producer: Producer,
    redis_client: redis.Redis,
    keys: QueueKeys,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    start_worker("--concurrency", "2")
    long = producer.submit("tests.nap", 1.5, "long")
    held = producer.submit("tests.add", 2, 2, _after=[long])
    wait_for(lambda: redis_client.hget(keys.job(long.id), "status") == b"running")
    record = producer.status(held.id)
    assert record is not None
    assert record["status"] == "queued"
    assert record["after_left"] == 1
    assert "held" not in record
    # While it waits, the other slot runs other work.
    assert producer.submit("tests.add", 1, 1).result(timeout=10) == 2
    assert not long.done()
    assert held.result(timeout=30) == 4


def test_a_diamond_waits_for_both_sides(
    producer: Producer, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker("--concurrency", "4")
    root = producer.submit("tests.nap", 0.2, "root")
    left = producer.submit("tests.nap", 0.1, "left", _after=[root])
    right = producer.submit("tests.nap", 0.6, "right", _after=[root])
    joined = producer.submit("tests.add", 5, 5, _after=[left, right])
    assert joined.result(timeout=30) == 10
    ends = [producer.status(job.id)["finished_at"] for job in (left, right)]  # type: ignore[index]
    assert producer.status(joined.id)["started_at"] >= max(ends)  # type: ignore[index]


def test_a_dead_dependency_cancels_the_chain_after_it(
    producer: Producer, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker()
    failing = producer.submit("tests.boom", "no", _max_attempts=1)
    middle = producer.submit("tests.add", 1, 1, _after=[failing])
    last = producer.submit("tests.add", 2, 2, _after=[middle])
    concurrent.futures.wait([last], timeout=30)
    assert middle.cancelled()
    assert last.cancelled()
    middle_record = producer.status(middle.id)
    last_record = producer.status(last.id)
    assert middle_record
    assert last_record
    assert middle_record["status"] == "cancelled"
    assert middle_record["reason"] == "dependency"
    assert middle_record["error"] == f"dependency {failing.id} ended dead"
    assert last_record["error"] == f"dependency {middle.id} ended cancelled"
    assert "attempts" not in last_record  # it never ran


def test_cancelling_what_is_waited_for_cancels_the_waiting(
    producer: Producer, start_worker: Callable[..., WorkerProcess]
) -> None:
    first = producer.submit("tests.add", 1, 1)
    waiting = producer.submit("tests.add", 2, 2, _after=[first])
    assert producer.cancel(first.id).outcome.value == "cancelled"
    concurrent.futures.wait([waiting], timeout=10)
    assert waiting.cancelled()
    record = producer.status(waiting.id)
    assert record
    assert record["error"] == f"dependency {first.id} ended cancelled"
    start_worker()
    assert producer.submit("tests.add", 0, 0).result(timeout=30) == 0


def test_a_held_job_cancelled_never_runs(
    producer: Producer,
    redis_client: redis.Redis,
    keys: QueueKeys,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    first = producer.submit("tests.add", 1, 1)
    held = producer.submit("tests.add", 2, 2, _after=[first])
    assert producer.cancel(held.id).outcome.value == "cancelled"
    start_worker()
    assert first.result(timeout=30) == 2
    assert held.cancelled()
    assert redis_client.llen(keys.ready) == 0
    assert "attempts" not in producer.status(held.id)  # type: ignore[operator]


def test_jobs_already_ended_settle_the_wait_at_once(
    producer: Producer,
    redis_client: redis.Redis,
    keys: QueueKeys,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    start_worker()
    done = producer.submit("tests.add", 1, 1)
    dead = producer.submit("tests.boom", _max_attempts=1)
    assert done.result(timeout=30) == 2
    concurrent.futures.wait([dead], timeout=30)
    assert producer.submit("tests.add", 3, 3, _after=[done]).result(timeout=30) == 6
    refused = producer.submit("tests.add", 3, 3, _after=[done, dead])
    concurrent.futures.wait([refused], timeout=10)
    assert refused.cancelled()
    assert producer.status(refused.id)["error"] == f"dependency {dead.id} ended dead"  # type: ignore[index]


def test_a_job_pushed_by_another_producer_can_be_waited_for(
    producer: Producer,
    redis_client: redis.Redis,
    keys: QueueKeys,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    # As a producer in another language pushes it: bytes in the ready list, no record.
    redis_client.lpush(keys.ready, b'{"task": "tests.add", "args": [20, 1], "id": "foreign"}')
    after = producer.submit("tests.add", 1, 1, _after=["foreign"])
    assert producer.status(after.id)["after_left"] == 1  # type: ignore[index]
    start_worker()
    assert after.result(timeout=30) == 2
    assert producer.job("foreign").result(timeout=5) == 21


def test_a_delayed_job_held_goes_to_the_delayed_set(
    producer: Producer,
    redis_client: redis.Redis,
    keys: QueueKeys,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    # An idle worker looks at the delayed set when its blocking pop ends: soon, here.
    start_worker(env={"COROQ_POLL_TIMEOUT": "0.5"})
    first = producer.submit("tests.add", 1, 1)
    later = producer.submit("tests.add", 4, 4, _after=[first], _delay=1.0)
    assert later.result(timeout=30) == 8
    record = producer.status(later.id)
    assert record
    assert record["started_at"] >= record["enqueued_at"] + 1.0


@pytest.mark.parametrize(
    ("after", "message"),
    [
        (["no-such-job"], "no job 'no-such-job'"),
        ([], "_after is empty"),
        (42, "_after must be a list"),
        ([call("tests.add", 1, 1)], "a call(...) can be waited for only"),
        ([""], "invalid job id"),
    ],
)
def test_bad_dependencies_push_nothing(
    producer: Producer, redis_client: redis.Redis, keys: QueueKeys, after: object, message: str
) -> None:
    with pytest.raises(InvalidJob, match=message.replace("(", r"\(").replace(")", r"\)")):
        producer.push("tests.add", 1, 1, _id="dependent", _after=after)
    assert redis_client.llen(keys.ready) == 0
    assert not redis_client.exists(keys.job("dependent"))


def test_a_dependency_on_another_queue_is_refused(
    producer: Producer, redis_url: str, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    with Producer(redis_url, queue=f"{keys.queue}-other") as other:
        elsewhere = other.submit("tests.add", 1, 1)
        with pytest.raises(InvalidJob, match="own queue"):
            producer.push("tests.add", 1, 1, _after=[elsewhere])
    assert redis_client.llen(keys.ready) == 0


def test_a_taken_id_is_refused_so_no_cycle_can_be_built(
    producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    first = producer.submit("tests.add", 1, 1, _id="a")
    producer.submit("tests.add", 1, 1, _id="b", _after=[first])
    # "a" waiting for "b" would close a cycle: "a" is taken (b waits for it).
    with pytest.raises(InvalidJob, match="'a' is taken"):
        producer.push("tests.add", 1, 1, _id="a", _after=["b"])
    with pytest.raises(InvalidJob, match="'b' is taken"):
        producer.push("tests.add", 1, 1, _id="b", _after=["a"])
    assert redis_client.llen(keys.ready) == 1  # "a" alone


def test_group_members_wait_for_earlier_members(
    producer: Producer, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker("--concurrency", "4")
    before = producer.submit("tests.nap", 0.2, "outside")
    fetch = call("tests.nap", 0.3, "fetched", _id="fetch")
    parse = call("tests.nap", 0.1, "parsed", _id="parse", _after=[fetch, before])
    store = call("tests.add", 1, 1, _id="store", _after=["parse"])
    group = producer.group([fetch, parse, store], then=call("tests.collect", "pipeline"))
    outcome = group.callback.result(timeout=30)
    assert [r["status"] for r in outcome["results"]] == ["succeeded"] * 3
    parse_record, fetch_record = producer.status("parse"), producer.status("fetch")
    assert parse_record
    assert fetch_record
    assert parse_record["started_at"] >= fetch_record["finished_at"]


def test_a_group_member_cancelled_by_its_dependency_counts_in_the_group(
    producer: Producer, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker()
    fails = call("tests.boom", _id="fails", _max_attempts=1)
    group = producer.group(
        [fails, call("tests.add", 1, 1, _id="then", _after=[fails])],
        then=call("tests.collect", "x"),
    )
    outcome = group.callback.result(timeout=30)
    assert outcome["results"][1] == {
        "id": "then",
        "status": "cancelled",
        "error": "dependency fails ended dead",
    }


def test_a_member_cannot_wait_for_a_later_one(
    producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    later = call("tests.add", 1, 1)
    with pytest.raises(InvalidJob, match="member 0 waits for member 1"):
        producer.group([call("tests.add", 1, 1, _after=[later]), later], then=call("tests.collect"))
    with pytest.raises(InvalidJob, match="takes no _after"):
        producer.group([later], then=call("tests.collect", _after=[later]))
    assert redis_client.llen(keys.ready) == 0
    assert not list(redis_client.scan_iter(f"{keys.base}:*"))


def test_async_dependencies_gather(
    redis_url: str, keys: QueueKeys, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker("--concurrency", "4")

    async def main() -> list[object]:
        async with AsyncProducer(redis_url, queue=keys.queue) as p:
            parts = [await p.submit("tests.add", i, i) for i in range(3)]
            total = await p.submit("tests.add", 100, 1, _after=parts)
            return await asyncio.gather(*parts, total)

    assert asyncio.run(main()) == [0, 2, 4, 101]


def test_a_settling_left_by_a_lost_worker_is_done_by_the_next_one(
    producer: Producer,
    redis_client: redis.Redis,
    keys: QueueKeys,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    redis_client.hset(keys.job("root"), "status", "running")
    held = producer.submit("tests.add", 1, 2, _after=["root"])
    # As a worker killed right after recording the success leaves it: marked, not settled.
    redis_client.hset(keys.job("root"), "status", "succeeded")
    redis_client.sadd(keys.settling, "root")
    start_worker()
    assert held.result(timeout=30) == 3
    assert redis_client.scard(keys.settling) == 0
