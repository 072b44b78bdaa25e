"""Delayed pushes and waiting for outcomes (DESIGN §2, §4), against fakeredis.

Delayed jobs go to `coroq:{Q}:delayed` scored by their due time in epoch ms, never to the
ready list; `--delay`/`--at` exclude each other and `--front`; `wait` returns final records.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import fakeredis
import orjson
import pytest
from typer.testing import CliRunner

import producer.client
from producer.async_client import AsyncProducer
from producer.cli import app
from producer.client import Producer, plan_batches
from producer.completions import Waiters, WaitForAll
from producer.envelope import JobEnvelope, validate_envelope
from producer.errors import InvalidSchedule, PartialPush, WaitTimeout
from producer.keys import QueueKeys
from producer.schedule import Schedule, epoch_ms, make_schedule, parse_at
from tests.conftest import wait_for
from tests.unit.failing_client import FailingOnRound
from worker.jobs.protocol import QueueProtocol
from worker.jobs.queues import SyncQueue

KEYS = QueueKeys("q")
runner = CliRunner()


def jobs(*ids: str) -> list[JobEnvelope]:
    return [validate_envelope({"task": "echo", "id": job_id}) for job_id in ids]


def delayed(client: fakeredis.FakeRedis, keys: QueueKeys = KEYS) -> dict[str, float]:
    """The delayed set as {job id: score}."""
    return {
        orjson.loads(member)["id"]: score
        for member, score in client.zrange(keys.delayed, 0, -1, withscores=True)
    }


def set_record(client: fakeredis.FakeRedis, job_id: str, **fields: str) -> None:
    client.hset(KEYS.job(job_id), mapping=fields)


# --- the API: scores, validation -------------------------------------------------------------


def test_a_delayed_push_scores_jobs_by_due_ms_and_leaves_ready_empty(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    before = time.time()
    ids = Producer(client=fake_redis, queue="q").push_many(jobs("a", "b", "c"), delay=30)
    after = time.time()
    assert ids == ["a", "b", "c"]
    assert fake_redis.llen(KEYS.ready) == 0
    scores = delayed(fake_redis)
    assert set(scores) == {"a", "b", "c"}
    for job_id, score in scores.items():
        assert score == int(score), job_id  # whole milliseconds
        assert (before + 30) * 1000 <= score <= math.ceil((after + 30) * 1000)


def test_the_due_time_is_never_before_enqueued_at_plus_the_delay(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    Producer(client=fake_redis, queue="q").push_many(jobs(*"abcdefgh"), delay=1.5, batch_size=3)
    for member, score in fake_redis.zrange(KEYS.delayed, 0, -1, withscores=True):
        enqueued_at = orjson.loads(member)["enqueued_at"]
        assert score >= (enqueued_at + 1.5) * 1000


def test_push_with_at_scores_the_exact_millisecond_and_keeps_the_push_time(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    at = datetime(2026, 12, 1, 9, 0, 0, 250_000, tzinfo=timezone(timedelta(hours=1)))
    before = time.time()
    job_id = Producer(client=fake_redis, queue="q").push("echo", "hi", _at=at, _id="j-1")
    after = time.time()
    assert job_id == "j-1"
    [(member, score)] = fake_redis.zrange(KEYS.delayed, 0, -1, withscores=True)
    assert score == 1_796_112_000_250  # 2026-12-01T08:00:00.250Z
    wire = orjson.loads(member)
    assert wire["args"] == ["hi"]
    assert before <= wire["enqueued_at"] <= after  # enqueued_at stays the push time
    assert fake_redis.llen(KEYS.ready) == 0


def test_push_with_a_timedelta_delay(fake_redis: fakeredis.FakeRedis) -> None:
    before = time.time()
    Producer(client=fake_redis, queue="q").push("echo", _delay=timedelta(minutes=5), _id="j")
    assert delayed(fake_redis)["j"] >= (before + 300) * 1000


def test_delayed_jobs_are_promoted_by_the_workers_take_script_once_due(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    producer = Producer(client=fake_redis, queue="q")
    producer.push_many(jobs("later"), delay=60)
    producer.push_many(jobs("past"), at=datetime(2020, 1, 1, tzinfo=UTC))  # due at once
    queue = SyncQueue(QueueProtocol(KEYS, "w-1", 600), fake_redis)
    taken = queue.take(10)
    assert [orjson.loads(raw)["id"] for raw in taken.jobs] == ["past"]
    assert taken.next_due_ms == delayed(fake_redis)["later"]
    # At the due time the worker sees (not a minute from now), the later job is taken.
    next_due, suspects, paused, *moved = queue.run(queue.protocol.take(10, taken.next_due_ms))
    assert (suspects, paused) == (0, 0)
    assert [orjson.loads(raw)["id"] for raw in moved] == ["later"]
    assert next_due == -1
    assert fake_redis.zcard(KEYS.delayed) == 0


@pytest.mark.parametrize(
    "options",
    [
        {"_delay": -1},
        {"_delay": timedelta(seconds=-1)},
        {"_delay": float("nan")},
        {"_delay": 5, "_at": datetime(2030, 1, 1, tzinfo=UTC)},
        {"_delay": 5, "_front": True},
        {"_at": datetime(2030, 1, 1, tzinfo=UTC), "_front": True},
        {"_at": datetime(2030, 1, 1)},  # naive: no offset
    ],
)
def test_invalid_schedules_are_rejected_and_push_nothing(
    fake_redis: fakeredis.FakeRedis, options: dict[str, Any]
) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        Producer(client=fake_redis, queue="q").push("echo", **options)
    assert isinstance(caught.value, ValueError)
    assert "_delay" in str(caught.value) or "_at" in str(caught.value)
    assert fake_redis.zcard(KEYS.delayed) == 0
    assert fake_redis.llen(KEYS.ready) == 0


def test_push_many_rejects_a_negative_delay_and_a_naive_time(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    producer = Producer(client=fake_redis, queue="q")
    with pytest.raises(InvalidSchedule, match="0 or more seconds"):
        producer.push_many(jobs("a"), delay=-0.5)
    with pytest.raises(InvalidSchedule, match="no UTC offset"):
        producer.push_many(jobs("a"), at=datetime(2030, 1, 1))
    assert fake_redis.zcard(KEYS.delayed) == 0


def test_plan_batches_puts_delayed_batches_on_the_delayed_key() -> None:
    batches = list(plan_batches(jobs(*"abcde"), KEYS, schedule=Schedule(at_ms=5), batch_size=2))
    assert [batch.ids for batch in batches] == [["a", "b"], ["c", "d"], ["e"]]
    assert all(batch.key == KEYS.delayed and batch.due_ms == 5 for batch in batches)
    assert not any(batch.front for batch in batches)


def test_schedule_helpers() -> None:
    assert make_schedule() is None
    assert make_schedule(0) == Schedule(delay=0.0)
    assert epoch_ms(datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC)) == 1  # rounded up
    assert parse_at("2026-12-01T08:00:00Z") == datetime(2026, 12, 1, 8, tzinfo=UTC)
    with pytest.raises(InvalidSchedule, match="--at: invalid ISO-8601"):
        parse_at("tomorrow")


def test_a_delayed_push_cut_off_part_way_names_what_went_in(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    ids = [f"job-{n}" for n in range(25)]
    producer = Producer(client=FailingOnRound(fake_redis, failing_round=2), queue="q")
    with pytest.raises(PartialPush) as caught:
        producer.push_many(jobs(*ids), delay=10, batch_size=1)
    assert caught.value.pushed == ids[:10]
    assert caught.value.uncertain == ids[10:20]
    assert caught.value.remaining == 5
    assert set(delayed(fake_redis)) == set(ids[:10])


# --- waiting ------------------------------------------------------------------------------


def test_wait_returns_the_final_record_of_each_job(fake_redis: fakeredis.FakeRedis) -> None:
    set_record(fake_redis, "a", status="succeeded", attempts="1", result="[3]")
    set_record(fake_redis, "b", status="dead", reason="handler_error", error="RuntimeError: x")
    records = Producer(client=fake_redis, queue="q").wait(["a", "b", "a"], timeout=0)
    assert records == {
        "a": {"status": "succeeded", "attempts": 1, "result": [3]},
        "b": {"status": "dead", "reason": "handler_error", "error": "RuntimeError: x"},
    }


@pytest.mark.parametrize("status", [None, "queued", "running", "retrying"])
def test_a_job_not_final_times_out_naming_how_many_are_pending(
    fake_redis: fakeredis.FakeRedis, status: str | None
) -> None:
    set_record(fake_redis, "done", status="succeeded")
    if status is not None:
        set_record(fake_redis, "open", status=status)
    with pytest.raises(TimeoutError) as caught:
        Producer(client=fake_redis, queue="q").wait(["done", "open"], timeout=0)
    error = caught.value
    assert isinstance(error, WaitTimeout)
    assert error.pending == ["open"]
    assert set(error.records) == {"done"}
    assert "1 of 2 job(s) still pending" in str(error)


def test_wait_hears_of_a_job_that_ends_later(fake_redis: fakeredis.FakeRedis) -> None:
    """The worker's script records the outcome and publishes the id (a watched record)."""
    set_record(fake_redis, "a", status="running")
    producer = Producer(client=fake_redis, queue="q")

    def finish_later() -> None:
        wait_for(lambda: fake_redis.hget(KEYS.job("a"), "watched"))
        set_record(fake_redis, "a", status="succeeded", result="7")
        fake_redis.publish(KEYS.done_channel, "a")

    worker = threading.Thread(target=finish_later)
    worker.start()
    try:
        assert producer.wait(["a"], timeout=10)["a"]["result"] == 7
    finally:
        worker.join()
        producer.close()


def test_a_negative_timeout_is_an_error(fake_redis: fakeredis.FakeRedis) -> None:
    with pytest.raises(InvalidSchedule, match="timeout"):
        Producer(client=fake_redis, queue="q").wait(["a"], timeout=-1)


def test_a_record_no_longer_final_when_read_stays_pending() -> None:
    waiters = Waiters("coroq")
    wait = WaitForAll(["a", "b"], None, threading.Event())
    waiters.add(KEYS, wait.deliveries)
    waiters.finish_if_final("q", "a", {b"status": b"queued"})  # revived before it was read
    assert wait.pending == {"a", "b"}
    waiters.finish_if_final("q", "a", [b"status", b"dead", b"reason", b"x"])
    assert wait.pending == {"b"}
    assert wait.records == {"a": {"status": "dead", "reason": "x"}}
    assert not wait.event.is_set()
    waiters.finish_if_final("q", "b", {b"status": b"cancelled"})
    assert wait.event.is_set()
    assert list(wait.result()) == ["a", "b"]


def test_the_async_twin_pushes_delayed_jobs_and_waits() -> None:
    async def scenario() -> tuple[list[str], dict[str, dict[str, Any]], int, int]:
        client = fakeredis.FakeAsyncRedis()
        async with AsyncProducer(client=client, queue="q") as producer:
            ids = await producer.push_many(jobs("a", "b"), delay=timedelta(seconds=5))
            one = await producer.push("echo", _at=datetime(2030, 1, 1, tzinfo=UTC), _id="c")
            for job_id in [*ids, one]:
                await client.hset(KEYS.job(job_id), mapping={"status": "succeeded"})
            records = await producer.wait([*ids, one], timeout=5)
            with pytest.raises(WaitTimeout):
                await producer.wait(["never"], timeout=0.05)
            with pytest.raises(InvalidSchedule):
                await producer.push("echo", _delay=-1)
            return ids, records, await client.zcard(KEYS.delayed), await client.llen(KEYS.ready)

    ids, records, delayed_count, ready_count = asyncio.run(scenario())
    assert ids == ["a", "b"]
    assert set(records) == {"a", "b", "c"}
    assert (delayed_count, ready_count) == (3, 0)


# --- the CLI ------------------------------------------------------------------------------


@pytest.fixture
def cli_redis(
    fake_redis: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> Iterator[fakeredis.FakeRedis]:
    """`producer push` talking to fakeredis."""
    monkeypatch.setattr(producer.client, "sync_client", lambda url: fake_redis)
    return fake_redis


def job_file(tmp_path: Path, *jobs: dict[str, Any]) -> str:
    path = tmp_path / "jobs.json"
    path.write_bytes(orjson.dumps(list(jobs)))
    return str(path)


def push(*args: str) -> Any:
    return runner.invoke(app, ["push", *args, "--queue", "q"])


def test_cli_delay_puts_the_jobs_in_the_delayed_set(
    cli_redis: fakeredis.FakeRedis, tmp_path: Path
) -> None:
    before = time.time()
    result = push(job_file(tmp_path, {"task": "echo", "id": "a"}), "--delay", "1.5m")
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["a"]
    assert "pushed 1 job(s) to queue q, due at " in result.stderr
    assert cli_redis.llen(KEYS.ready) == 0
    assert delayed(cli_redis)["a"] >= (before + 90) * 1000


def test_cli_at_scores_the_given_time(cli_redis: fakeredis.FakeRedis, tmp_path: Path) -> None:
    result = push(job_file(tmp_path, {"task": "echo", "id": "a"}), "--at", "2026-12-01T08:00Z")
    assert result.exit_code == 0, result.output
    assert delayed(cli_redis) == {"a": 1_796_112_000_000}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--front", "--delay", "30s"], "--delay and --front exclude each other"),
        (["--front", "--at", "2030-01-01T00:00:00Z"], "--at and --front exclude each other"),
        (["--delay", "30s", "--at", "2030-01-01T00:00:00Z"], "give --delay or --at, not both"),
        (["--at", "2030-01-01T09:00:00"], "--at: '2030-01-01T09:00:00' has no UTC offset"),
        (["--at", "next week"], "--at: invalid ISO-8601 time"),
        (["--delay=-5s"], "--delay: invalid duration"),
        (["--delay", "soon"], "--delay: invalid duration"),
        (["--timeout", "5s"], "--timeout needs --wait"),
        (["--wait", "--timeout", "forever"], "--timeout: invalid duration"),
    ],
)
def test_cli_rejects_clashing_or_invalid_options_and_pushes_nothing(
    cli_redis: fakeredis.FakeRedis, tmp_path: Path, args: list[str], message: str
) -> None:
    result = push(job_file(tmp_path, {"task": "echo"}), *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "nothing was pushed" in result.stderr
    assert result.stdout == ""
    assert cli_redis.llen(KEYS.ready) == 0
    assert cli_redis.zcard(KEYS.delayed) == 0


def test_cli_wait_reports_each_dead_job_and_exits_1(
    cli_redis: fakeredis.FakeRedis, tmp_path: Path
) -> None:
    set_record(cli_redis, "ok", status="succeeded")
    set_record(cli_redis, "bad", status="dead", reason="handler_error", error="Boom\nline two")
    jobs_path = job_file(tmp_path, {"task": "echo", "id": "ok"}, {"task": "echo", "id": "bad"})
    result = push(jobs_path, "--wait")
    assert result.exit_code == 1, result.output
    assert result.stdout.split() == ["ok", "bad"]
    lines = result.stderr.splitlines()
    assert "1 succeeded, 1 dead" in lines
    assert "dead: bad handler_error: Boom line two" in lines


def test_cli_wait_exits_0_when_all_succeeded(
    cli_redis: fakeredis.FakeRedis, tmp_path: Path
) -> None:
    set_record(cli_redis, "a", status="succeeded")
    result = push(job_file(tmp_path, {"task": "echo", "id": "a"}), "--wait", "--timeout", "10s")
    assert result.exit_code == 0, result.output
    assert "1 succeeded, 0 dead" in result.stderr.splitlines()


def test_cli_wait_timeout_exits_3_naming_the_pending_jobs(
    cli_redis: fakeredis.FakeRedis, tmp_path: Path
) -> None:
    set_record(cli_redis, "a", status="succeeded")
    set_record(cli_redis, "b", status="retrying")
    jobs_path = job_file(tmp_path, {"task": "echo", "id": "a"}, {"task": "echo", "id": "b"})
    result = push(jobs_path, "--wait", "--timeout", "0s", "--quiet")
    assert result.exit_code == 3, result.output
    assert result.stdout == ""
    assert "1 succeeded, 0 dead, 1 still pending" in result.stderr
    assert "timed out after 0s: 1 of 2 job(s) still pending" in result.stderr


def test_cli_wait_with_a_dead_job_and_a_pending_one_exits_1(
    cli_redis: fakeredis.FakeRedis, tmp_path: Path
) -> None:
    set_record(cli_redis, "a", status="dead", reason="unknown_task", error="no task 'x'")
    jobs_path = job_file(tmp_path, {"task": "x", "id": "a"}, {"task": "echo", "id": "b"})
    result = push(jobs_path, "--wait", "--timeout", "0s")
    assert result.exit_code == 1, result.output
    assert "0 succeeded, 1 dead, 1 still pending" in result.stderr
    assert "dead: a unknown_task: no task 'x'" in result.stderr
