"""Producer pushes (DESIGN §2, §4): LPUSH to the ready list, order kept, pipelined batches."""

from __future__ import annotations

import fakeredis
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from producer.client import Producer, plan_batches
from producer.envelope import JobEnvelope, validate_envelope
from producer.errors import PartialPush
from producer.keys import QueueKeys
from tests.unit.failing_client import FailingOnRound


def jobs(*ids: str) -> list[JobEnvelope]:
    return [validate_envelope({"task": "echo", "id": job_id}) for job_id in ids]


def consume(client: fakeredis.FakeRedis, keys: QueueKeys) -> list[str]:
    """Take every job from the consuming (right) end, as a worker does; ids in run order."""
    taken = []
    while (raw := client.rpop(keys.ready)) is not None:
        taken.append(orjson.loads(raw)["id"])
    return taken


def test_jobs_pushed_in_order_are_consumed_in_order(fake_redis: fakeredis.FakeRedis) -> None:
    producer = Producer(client=fake_redis, queue="q")
    ids = producer.push_many(jobs("a", "b", "c"))
    assert ids == ["a", "b", "c"]
    assert consume(fake_redis, QueueKeys("q")) == ["a", "b", "c"]


def test_new_jobs_wait_behind_older_ones(fake_redis: fakeredis.FakeRedis) -> None:
    producer = Producer(client=fake_redis, queue="q")
    producer.push_many(jobs("old1", "old2"))
    producer.push_many(jobs("a", "b"))
    assert consume(fake_redis, QueueKeys("q")) == ["old1", "old2", "a", "b"]


def test_front_jobs_run_first_in_file_order(fake_redis: fakeredis.FakeRedis) -> None:
    producer = Producer(client=fake_redis, queue="q")
    producer.push_many(jobs("old1", "old2"))
    ids = producer.push_many(jobs("a", "b", "c"), front=True)
    assert ids == ["a", "b", "c"]
    assert consume(fake_redis, QueueKeys("q")) == ["a", "b", "c", "old1", "old2"]


def test_front_jobs_run_in_file_order_across_several_batches(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    # Each batch is RPUSHed in reverse, but a later batch lands to the right of (ahead of)
    # the earlier ones: with 2-job batches a..e run as e, c, d, a, b.
    producer = Producer(client=fake_redis, queue="q")
    producer.push_many(jobs("old"))
    ids = producer.push_many(jobs("a", "b", "c", "d", "e"), front=True, batch_size=2)
    assert consume(fake_redis, QueueKeys("q")) == [*ids, "old"]
    assert ids == ["a", "b", "c", "d", "e"]


def test_jobs_are_grouped_in_batches_of_the_batch_size() -> None:
    batches = list(plan_batches(jobs(*"abcdefg"), QueueKeys("q"), batch_size=3))
    assert [batch.ids for batch in batches] == [["a", "b", "c"], ["d", "e", "f"], ["g"]]
    assert all(batch.key == "coroq:{q}:ready" and not batch.front for batch in batches)
    assert [len(batch.payloads) for batch in batches] == [3, 3, 1]


def test_front_batches_hold_their_payloads_last_job_first_for_rpush() -> None:
    (batch,) = plan_batches(jobs("a", "b", "c"), QueueKeys("q"), front=True)
    assert batch.front
    assert [orjson.loads(p)["id"] for p in batch.payloads] == ["c", "b", "a"]
    assert batch.ids == ["c", "b", "a"]


def test_planning_stamps_jobs_without_an_id_or_enqueue_time() -> None:
    envelope = validate_envelope({"task": "echo"})
    (batch,) = plan_batches([envelope], QueueKeys("q"))
    pushed = orjson.loads(batch.payloads[0])
    assert pushed["id"] == batch.ids[0] == envelope.id
    assert isinstance(pushed["enqueued_at"], float)


def test_push_many_reports_progress_per_batch(fake_redis: fakeredis.FakeRedis) -> None:
    progress: list[int] = []
    Producer(client=fake_redis).push_many(jobs(*"abcde"), batch_size=2, progress=progress.append)
    assert progress == [2, 2, 1]


def test_push_many_can_target_another_queue(fake_redis: fakeredis.FakeRedis) -> None:
    producer = Producer(client=fake_redis, queue="q")
    producer.push_many(jobs("a"), queue="other")
    assert fake_redis.llen("coroq:{q}:ready") == 0
    assert consume(fake_redis, QueueKeys("other")) == ["a"]


def test_push_builds_one_job_and_returns_its_id(fake_redis: fakeredis.FakeRedis) -> None:
    producer = Producer(client=fake_redis)
    job_id = producer.push("echo", to="x", _max_attempts=2, _id="j-1")
    assert job_id == "j-1"
    (raw,) = fake_redis.lrange("coroq:{default}:ready", 0, -1)
    wire = orjson.loads(raw)
    assert {k: wire[k] for k in ("task", "args", "id", "max_attempts")} == {
        "task": "echo",
        "args": {"to": "x"},
        "id": "j-1",
        "max_attempts": 2,
    }


def test_status_returns_the_decoded_record(fake_redis: fakeredis.FakeRedis) -> None:
    keys = QueueKeys("q")
    fake_redis.hset(
        keys.job("j-1"),
        mapping={
            "status": "succeeded",
            "attempts": "2",
            "max_attempts": "3",
            "started_at": "1700000000.5",
            "finished_at": "1700000001.25",
            "result": '{"sum": 5, "items": [1, null]}',
            "worker": "w-1",
            "task": "tests.add",
        },
    )
    record = Producer(client=fake_redis, queue="q").status("j-1")
    assert record == {
        "status": "succeeded",
        "attempts": 2,
        "max_attempts": 3,
        "started_at": 1700000000.5,
        "finished_at": 1700000001.25,
        "result": {"sum": 5, "items": [1, None]},
        "worker": "w-1",
        "task": "tests.add",
    }


def test_status_of_an_unknown_job_is_none(fake_redis: fakeredis.FakeRedis) -> None:
    assert Producer(client=fake_redis).status("nope") is None


@pytest.mark.parametrize("front", [False, True])
@settings(max_examples=40, deadline=None)
@given(
    count=st.integers(min_value=1, max_value=30),
    batch_size=st.integers(min_value=1, max_value=12),
    waiting=st.integers(min_value=0, max_value=3),
)
def test_any_push_runs_in_push_order_and_returns_the_ids_in_that_order(
    front: bool, count: int, batch_size: int, waiting: int
) -> None:
    client = fakeredis.FakeRedis()
    producer = Producer(client=client, queue="q")
    older = [f"old{i}" for i in range(waiting)]
    producer.push_many(jobs(*older))
    new = [f"job{i}" for i in range(count)]
    ids = producer.push_many(jobs(*new), front=front, batch_size=batch_size)
    assert ids == new
    expected = [*new, *older] if front else [*older, *new]
    assert consume(client, QueueKeys("q")) == expected


@pytest.mark.parametrize("front", [False, True])
def test_a_push_of_one_batch_is_one_command_and_a_failed_one_names_its_jobs(
    fake_redis: fakeredis.FakeRedis, front: bool
) -> None:
    # Round 1 goes in; round 2, the same push again, fails.
    client = FailingOnRound(fake_redis, failing_round=2)
    producer = Producer(client=client, queue="q")
    assert producer.push_many(jobs("a", "b"), front=front) == ["a", "b"]
    with pytest.raises(PartialPush) as caught:
        producer.push_many(jobs("c", "d"), front=front)
    assert client.pipelines == 0  # one command each, atomic by itself: no MULTI/EXEC
    assert caught.value.pushed == []
    assert sorted(caught.value.uncertain) == ["c", "d"]
    assert caught.value.remaining == 0
    assert consume(fake_redis, QueueKeys("q")) == ["a", "b"]


def test_a_push_cut_off_part_way_names_what_went_in(fake_redis: fakeredis.FakeRedis) -> None:
    # Batches of 1 job, ten per round trip: round 2 holds jobs 10-19.
    ids = [f"job-{n}" for n in range(25)]
    producer = Producer(client=FailingOnRound(fake_redis, failing_round=2), queue="q")
    with pytest.raises(PartialPush) as caught:
        producer.push_many(jobs(*ids), batch_size=1)
    assert caught.value.pushed == ids[:10]
    assert caught.value.uncertain == ids[10:20]
    assert caught.value.remaining == 5
    assert consume(fake_redis, QueueKeys("q")) == ids[:10]
    assert "10 job(s) were pushed" in str(caught.value)
