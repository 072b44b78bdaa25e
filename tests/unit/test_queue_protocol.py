"""`QueueProtocol`, in process against the suite's real redis-server: the consumer thread's
steps through `SyncQueue` (take, pop, start, held, and the requeue and adopt it sends), the
event loop's through `AsyncQueue` (ack, retry, dead on a pipelined client; promote; recover).
Every test asserts on what Redis holds afterwards."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import orjson
import pytest
import redis
import redis.asyncio

from producer.client import Producer
from producer.keys import QueueKeys
from producer.scripts import ScriptCall
from worker.jobs.protocol import (
    PROMOTE_BATCH,
    Failure,
    JobStart,
    QueueProtocol,
    Recovered,
    Started,
    recovered,
    start_token,
    started,
)
from worker.jobs.queues import AsyncQueue, SyncQueue, pipelined_worker_scripts

WORKER = "w-1"
TTL = 600
FAILURE = Failure("handler_error", "RuntimeError: boom", "Traceback ...")

T = TypeVar("T")


@pytest.fixture
def protocol(keys: QueueKeys) -> QueueProtocol:
    return QueueProtocol(keys, WORKER, TTL)


@pytest.fixture
def queue(protocol: QueueProtocol, redis_client: redis.Redis) -> SyncQueue:
    return SyncQueue(protocol, redis_client)


# --- helpers ------------------------------------------------------------------------------


def raw_job(job_id: str, **extra: Any) -> bytes:
    return orjson.dumps({"task": "echo", "id": job_id, "args": [], **extra})


def job_start(job_id: str, **options: Any) -> JobStart:
    return JobStart(
        job_id,
        options.get("raw", raw_job(job_id)),
        options.get("task", "echo"),
        options.get("max_attempts", 3),
        options.get("enqueued_at"),
    )


def hold(queue: SyncQueue, *raws: bytes) -> None:
    """Put jobs in the worker's processing list, where a take or pop leaves them."""
    queue.client.lpush(queue.protocol.processing, *raws)


def start_batch(
    queue: SyncQueue, starts: Sequence[JobStart], token: str, group: int | None = None
) -> list[int]:
    """Count the starts of a batch as the runner does; the attempt number of each job."""
    return [
        found.attempt for found in started(queue.run(queue.protocol.start(starts, token, group)))
    ]


def start(queue: SyncQueue, job_id: str, **options: Any) -> int:
    """Start one job this worker holds, in a call of its own (a fresh token)."""
    [attempt] = start_batch(queue, [job_start(job_id, **options)], start_token("t-"))
    return attempt


def other_worker(queue: SyncQueue, worker_id: str) -> SyncQueue:
    protocol = QueueProtocol(queue.protocol.keys, worker_id, TTL)
    return SyncQueue(protocol, queue.client)


def record(client: redis.Redis, keys: QueueKeys, job_id: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in client.hgetall(keys.job(job_id)).items()}


def server_micros(client: redis.Redis) -> int:
    """The Redis server's clock (TIME), in microseconds."""
    seconds, micros = client.time()
    return seconds * 1_000_000 + micros


def as_micros(text: str) -> int:
    """An epoch time written by the scripts as "seconds.micros", exactly."""
    match = re.fullmatch(r"(\d+)\.(\d{6})", text)
    assert match, f"not seconds with six decimals: {text!r}"
    return int(match[1]) * 1_000_000 + int(match[2])


def on_event_loop(
    redis_url: str, protocol: QueueProtocol, step: Callable[[AsyncQueue], Awaitable[T]]
) -> T:
    """Run `step` on the event loop's face of the protocol, with its own pipelined client."""

    async def run() -> T:
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            return await step(AsyncQueue(protocol, pipelined_worker_scripts(client, ""), client))
        finally:
            await client.aclose()

    return asyncio.run(run())


def settle(redis_url: str, protocol: QueueProtocol, *calls: ScriptCall) -> list[Any]:
    """Send outcome calls together, as jobs finishing at once do; one result each."""

    async def run_all(queue: AsyncQueue) -> list[Any]:
        return list(await asyncio.gather(*(queue.run(call) for call in calls)))

    return on_event_loop(redis_url, protocol, run_all)


# --- start ----------------------------------------------------------------------------------


def test_start_records_a_batch_in_one_call(queue: SyncQueue, keys: QueueKeys) -> None:
    hold(queue, raw_job("j2"))
    start(queue, "j2")  # j2 has run once before
    hold(queue, raw_job("j1"))
    batch = [job_start("j1"), job_start("j2", task="other", max_attempts=5, enqueued_at=1.25)]
    call = queue.protocol.start(batch, start_token("t-"), None)
    # One script call names both records, so both starts are counted in one round trip.
    shared = [keys.processing(WORKER), keys.settling, keys.paused, keys.ready]
    shared += [keys.delayed]
    assert call.keys == [*shared, keys.job("j1"), keys.job("j2")]
    # (attempt, forgiven, due time of a job over its rate) each
    assert [int(n) for n in queue.run(call)] == [1, 0, 0, 2, 0, 0]
    first = record(queue.client, keys, "j1")
    assert (first["attempts"], first["task"], first["max_attempts"]) == ("1", "echo", "3")
    assert "enqueued_at" not in first
    second = record(queue.client, keys, "j2")
    assert (second["attempts"], second["task"], second["max_attempts"]) == ("2", "other", "5")
    assert float(second["enqueued_at"]) == 1.25
    assert 0 < queue.client.ttl(keys.job("j2")) <= TTL


def test_start_counts_every_attempt_and_records_the_run(queue: SyncQueue, keys: QueueKeys) -> None:
    hold(queue, raw_job("j1"))
    assert start(queue, "j1", enqueued_at=1_699_999_999.0) == 1
    elsewhere = other_worker(queue, "w-2")
    hold(elsewhere, raw_job("j1"))
    assert start(elsewhere, "j1") == 2
    fields = record(queue.client, keys, "j1")
    assert fields["attempts"] == "2"
    assert fields["status"] == "running"
    assert fields["worker"] == "w-2"
    assert fields["task"] == "echo"
    assert fields["queue"] == keys.queue
    assert fields["max_attempts"] == "3"
    assert float(fields["enqueued_at"]) == 1_699_999_999.0  # kept from the first start
    assert 0 < queue.client.ttl(keys.job("j1")) <= TTL


def test_start_takes_started_at_from_the_server_clock(queue: SyncQueue, keys: QueueKeys) -> None:
    hold(queue, raw_job("j1"))
    before = server_micros(queue.client)
    start(queue, "j1")
    after = server_micros(queue.client)
    assert before <= as_micros(record(queue.client, keys, "j1")["started_at"]) <= after


def test_start_without_an_enqueue_time_records_none(queue: SyncQueue, keys: QueueKeys) -> None:
    hold(queue, raw_job("j1"))
    start(queue, "j1")
    assert "enqueued_at" not in record(queue.client, keys, "j1")


def test_a_start_sent_again_after_a_lost_reply_counts_once(
    queue: SyncQueue, keys: QueueKeys
) -> None:
    hold(queue, raw_job("j1"))
    token = start_token("t-")
    assert start_batch(queue, [job_start("j1")], token) == [1]
    assert start_batch(queue, [job_start("j1")], token) == [1]  # the same call, sent again
    assert record(queue.client, keys, "j1")["attempts"] == "1"
    assert start_batch(queue, [job_start("j1")], start_token("t-")) == [2]  # a new start counts


def test_a_job_no_longer_held_is_not_started_and_its_record_is_left_alone(
    queue: SyncQueue, keys: QueueKeys
) -> None:
    """A take whose reply came late: j1 was recovered, run and finished elsewhere."""
    finished = {"status": "succeeded", "attempts": "1", "worker": "w-2", "start_token": "x"}
    queue.client.hset(keys.job("j1"), mapping=finished)
    hold(queue, raw_job("j2"))
    assert start_batch(queue, [job_start("j1"), job_start("j2")], start_token("t-")) == [0, 1]
    assert record(queue.client, keys, "j1") == finished
    assert not queue.client.exists(keys.job("j3"))
    assert start_batch(queue, [job_start("j3")], start_token("t-")) == [0]
    assert not queue.client.exists(keys.job("j3"))  # no record made for a job not held


def test_a_start_no_longer_held_takes_back_what_an_earlier_sending_counted(
    queue: SyncQueue, keys: QueueKeys
) -> None:
    """The first sending counted the start but its reply was lost; by the time it is sent
    again the job was recovered to the ready list: it never ran here."""
    raw = raw_job("j1")
    hold(queue, raw)
    token = start_token("t-")
    assert start_batch(queue, [job_start("j1")], token) == [1]
    queue.client.lmove(keys.processing(WORKER), keys.ready, "LEFT", "RIGHT")  # recovered
    assert start_batch(queue, [job_start("j1")], token) == [0]
    fields = record(queue.client, keys, "j1")
    assert (fields["attempts"], fields["status"]) == ("0", "queued")
    assert "start_token" not in fields
    assert start_batch(queue, [job_start("j1")], token) == [0]  # a third sending takes nothing more
    assert record(queue.client, keys, "j1")["attempts"] == "0"
    assert queue.take(1).jobs == [raw]  # taken again, it starts its first attempt
    assert start(queue, "j1") == 1


def test_a_late_start_leaves_the_count_of_a_later_start_alone(
    queue: SyncQueue, keys: QueueKeys
) -> None:
    """Recovered and started again before the late sending came: that start replaced the
    token, and the late sending takes nothing back."""
    raw = raw_job("j1")
    hold(queue, raw)
    late_token = start_token("t-")
    assert start_batch(queue, [job_start("j1")], late_token) == [1]
    queue.client.lmove(keys.processing(WORKER), keys.ready, "LEFT", "RIGHT")  # recovered
    assert queue.take(1).jobs == [raw]
    assert start(queue, "j1") == 2
    queue.client.lrem(keys.processing(WORKER), 1, raw)  # and finished
    assert start_batch(queue, [job_start("j1")], late_token) == [0]
    fields = record(queue.client, keys, "j1")
    assert (fields["attempts"], fields["status"]) == ("2", "running")


# --- take and pop ------------------------------------------------------------------------


def test_take_moves_at_most_most_jobs_oldest_first_and_counts_nothing(
    queue: SyncQueue, keys: QueueKeys
) -> None:
    a, b, c = raw_job("a"), raw_job("b"), raw_job("c")
    queue.client.lpush(keys.ready, a, b, c)  # a was pushed first: it is taken first
    taken = queue.take(2)
    assert (taken.jobs, taken.next_due_ms) == ([a, b], -1)
    assert queue.client.lrange(keys.ready, 0, -1) == [c]
    assert queue.held() == [b, a]  # each moved to the head, as BLMOVE does
    assert not queue.client.exists(keys.job("a"), keys.job("b"))  # starts are start's
    assert queue.take(5).jobs == [c]
    assert queue.take(5).jobs == []


def test_take_promotes_due_delayed_jobs_first_and_returns_the_next_due_time(
    queue: SyncQueue, keys: QueueKeys
) -> None:
    waiting, due, later = raw_job("waiting"), raw_job("due"), raw_job("later")
    later_ms = int(time.time() * 1000) + 60_000
    queue.client.lpush(keys.ready, waiting)
    queue.client.zadd(keys.delayed, {due: 1_000, later: later_ms})
    taken = queue.take(1)
    assert taken.jobs == [due]  # promoted to the consuming end, ahead of what waited
    assert taken.next_due_ms == later_ms
    assert queue.client.lrange(keys.ready, 0, -1) == [waiting]
    assert queue.client.zrange(keys.delayed, 0, -1) == [later]


def test_jobs_promoted_together_are_taken_in_the_order_they_fell_due(
    queue: SyncQueue, keys: QueueKeys
) -> None:
    first, second, third = raw_job("first"), raw_job("second"), raw_job("third")
    queue.client.zadd(keys.delayed, {third: 3_000, first: 1_000, second: 2_000})
    assert queue.take(3).jobs == [first, second, third]


def test_take_of_none_only_promotes(queue: SyncQueue, keys: QueueKeys) -> None:
    waiting, due = raw_job("waiting"), raw_job("due")
    queue.client.lpush(keys.ready, waiting)
    queue.client.zadd(keys.delayed, {due: 1_000})
    taken = queue.take(0)
    assert (taken.jobs, taken.next_due_ms) == ([], -1)
    assert queue.client.lrange(keys.ready, 0, -1) == [waiting, due]
    assert queue.held() == []
    assert queue.client.zcard(keys.delayed) == 0


def test_take_promotes_at_most_a_batch_and_reports_the_rest_as_due(
    queue: SyncQueue, keys: QueueKeys
) -> None:
    queue.client.zadd(keys.delayed, {raw_job(f"d{n}"): 1_000 + n for n in range(PROMOTE_BATCH + 1)})
    taken = queue.take(0)
    assert queue.client.llen(keys.ready) == PROMOTE_BATCH
    assert taken.next_due_ms == 1_000 + PROMOTE_BATCH  # the one left, due already
    assert queue.client.zrange(keys.delayed, 0, -1) == [raw_job(f"d{PROMOTE_BATCH}")]


def test_pop_moves_one_job_into_the_processing_list(queue: SyncQueue, keys: QueueKeys) -> None:
    a, b = raw_job("a"), raw_job("b")
    queue.client.lpush(keys.ready, a, b)
    assert queue.pop(1.0) == a
    assert queue.held() == [a]
    assert queue.client.lrange(keys.ready, 0, -1) == [b]
    assert not queue.client.exists(keys.job("a"))


def test_pop_returns_none_when_nothing_comes_in_time(queue: SyncQueue, keys: QueueKeys) -> None:
    assert queue.pop(0.05) is None
    assert queue.held() == []
    assert not queue.client.exists(keys.ready)


# --- ack, retry, dead (the event loop's outcomes) ---------------------------------------------


def ack(protocol: QueueProtocol, job_id: str, raw: bytes, result: Any, attempt: int) -> ScriptCall:
    return protocol.ack(job_id, raw, orjson.dumps(result), attempt)


def test_ack_removes_exactly_one_copy_and_records_the_result(
    queue: SyncQueue, redis_url: str, keys: QueueKeys
) -> None:
    raw, other = raw_job("j1"), raw_job("j2")
    hold(queue, raw, other, raw)
    start(queue, "j1")
    queue.client.hset(keys.job("j1"), mapping={"reason": "timeout", "error": "e", "traceback": ""})
    before = time.time()
    assert settle(redis_url, queue.protocol, ack(queue.protocol, "j1", raw, {"sum": 5}, 1)) == [1]
    after = time.time()
    assert sorted(queue.held()) == sorted([raw, other])
    fields = record(queue.client, keys, "j1")
    assert fields["status"] == "succeeded"
    assert orjson.loads(fields["result"]) == {"sum": 5}
    assert before <= float(fields["finished_at"]) <= after  # the worker's clock
    assert not {"reason", "error", "traceback"} & fields.keys()  # an earlier failure's
    assert 0 < queue.client.ttl(keys.job("j1")) <= TTL


def test_ack_of_a_job_no_longer_held_records_nothing(
    queue: SyncQueue, redis_url: str, keys: QueueKeys
) -> None:
    raw = raw_job("j1")
    hold(queue, raw)
    start(queue, "j1")
    queue.client.lrem(keys.processing(WORKER), 1, raw)  # recovered by another worker
    before = record(queue.client, keys, "j1")
    assert settle(redis_url, queue.protocol, ack(queue.protocol, "j1", raw, "late", 1)) == [0]
    assert record(queue.client, keys, "j1") == before


def test_ack_of_an_attempt_that_is_no_longer_the_latest_records_nothing(
    queue: SyncQueue, redis_url: str, keys: QueueKeys
) -> None:
    """Fencing by attempt: the job came back to this worker's list after a recovery and a
    newer attempt started; the stale attempt's ack must not take the newer one's place."""
    raw = raw_job("j1")
    hold(queue, raw)
    start(queue, "j1")
    start(queue, "j1")
    assert settle(redis_url, queue.protocol, ack(queue.protocol, "j1", raw, "stale", 1)) == [0]
    assert queue.held() == [raw]
    assert record(queue.client, keys, "j1")["status"] == "running"
    assert settle(redis_url, queue.protocol, ack(queue.protocol, "j1", raw, "fresh", 2)) == [1]
    assert orjson.loads(record(queue.client, keys, "j1")["result"]) == "fresh"


def test_ack_without_a_record_still_acknowledges(queue: SyncQueue, redis_url: str) -> None:
    raw = raw_job("j1")
    hold(queue, raw)
    assert settle(redis_url, queue.protocol, ack(queue.protocol, "j1", raw, "ok", 3)) == [1]
    assert queue.held() == []


def test_ack_only_matches_the_exact_raw_bytes(
    queue: SyncQueue, redis_url: str, keys: QueueKeys
) -> None:
    held = raw_job("j1")
    hold(queue, held)
    changed = raw_job("j1", note="changed")
    assert settle(redis_url, queue.protocol, ack(queue.protocol, "j1", changed, 1, 1)) == [0]
    assert queue.held() == [held]
    assert not queue.client.exists(keys.job("j1"))


def test_retry_schedules_the_job_and_records_the_failure(
    queue: SyncQueue, redis_url: str, keys: QueueKeys
) -> None:
    raw = raw_job("j1")
    hold(queue, raw)
    start(queue, "j1")
    due_ms = 1_800_000_000_250
    call = queue.protocol.retry("j1", raw, FAILURE, 1, due_ms)
    assert settle(redis_url, queue.protocol, call) == [1]
    assert queue.held() == []
    assert queue.client.zrange(keys.delayed, 0, -1, withscores=True) == [(raw, due_ms)]
    fields = record(queue.client, keys, "j1")
    assert fields["status"] == "retrying"
    assert (fields["reason"], fields["error"]) == (FAILURE.reason, FAILURE.error)
    assert fields["traceback"] == FAILURE.traceback
    assert float(fields["next_attempt_at"]) == pytest.approx(due_ms / 1000, abs=1e-3)
    assert 0 < queue.client.ttl(keys.job("j1")) <= TTL


def test_retry_is_fenced_by_attempt_and_by_being_held(
    queue: SyncQueue, redis_url: str, keys: QueueKeys
) -> None:
    raw = raw_job("j1")
    hold(queue, raw)
    start(queue, "j1")
    start(queue, "j1")
    stale = queue.protocol.retry("j1", raw, FAILURE, 1, 1_000)
    not_held = queue.protocol.retry("j2", raw_job("j2"), FAILURE, 1, 1_000)
    assert settle(redis_url, queue.protocol, stale, not_held) == [0, 0]
    assert queue.held() == [raw]
    assert queue.client.zcard(keys.delayed) == 0
    assert record(queue.client, keys, "j1")["status"] == "running"
    assert not queue.client.exists(keys.job("j2"))


def dead_call(protocol: QueueProtocol, job_id: str, raw: bytes, attempt: int | None) -> ScriptCall:
    entry = orjson.dumps({"id": job_id, "reason": FAILURE.reason, "raw": raw.decode()})
    return protocol.dead(job_id, raw, FAILURE, attempt, entry)


def test_dead_moves_the_job_to_the_dead_list_and_records_why(
    queue: SyncQueue, redis_url: str, keys: QueueKeys
) -> None:
    raw = raw_job("j1")
    hold(queue, raw)
    start(queue, "j1")
    before = time.time()
    assert settle(redis_url, queue.protocol, dead_call(queue.protocol, "j1", raw, 1)) == [1]
    after = time.time()
    assert queue.held() == []
    (entry,) = queue.client.lrange(keys.dead, 0, -1)
    assert orjson.loads(entry) == {"id": "j1", "reason": FAILURE.reason, "raw": raw.decode()}
    fields = record(queue.client, keys, "j1")
    assert fields["status"] == "dead"
    assert (fields["reason"], fields["error"]) == (FAILURE.reason, FAILURE.error)
    assert fields["traceback"] == FAILURE.traceback
    assert before <= float(fields["finished_at"]) <= after
    assert 0 < queue.client.ttl(keys.job("j1")) <= TTL


def test_dead_of_a_job_no_longer_held_or_no_longer_its_attempt_changes_nothing(
    queue: SyncQueue, redis_url: str, keys: QueueKeys
) -> None:
    raw = raw_job("j1")
    hold(queue, raw)
    start(queue, "j1")
    start(queue, "j1")
    stale = dead_call(queue.protocol, "j1", raw, 1)
    not_held = dead_call(queue.protocol, "j2", raw_job("j2"), None)
    assert settle(redis_url, queue.protocol, stale, not_held) == [0, 0]
    assert queue.client.llen(keys.dead) == 0
    assert queue.held() == [raw]
    assert record(queue.client, keys, "j1")["status"] == "running"
    assert not queue.client.exists(keys.job("j2"))


def test_dead_of_bad_input_that_never_started_needs_only_to_be_held(
    queue: SyncQueue, redis_url: str, keys: QueueKeys
) -> None:
    raw = b'{"task": "echo", "id": "bad", "max_attempts": "3"}'
    hold(queue, raw)
    assert settle(redis_url, queue.protocol, dead_call(queue.protocol, "bad", raw, None)) == [1]
    assert queue.held() == []
    assert queue.client.llen(keys.dead) == 1
    fields = record(queue.client, keys, "bad")
    assert set(fields) == {"status", "reason", "error", "traceback", "finished_at"}
    assert fields["status"] == "dead"


# --- requeue and adopt -------------------------------------------------------------------


def requeue(queue: SyncQueue, job_id: str, raw: bytes, *, undo_start: bool) -> int:
    return int(queue.run(queue.protocol.requeue(job_id, raw, undo_start=undo_start)))


def test_requeue_with_undo_start_takes_the_start_back(queue: SyncQueue, keys: QueueKeys) -> None:
    raw = raw_job("j1")
    queue.client.lpush(keys.ready, b"waiting-1", b"waiting-2")
    hold(queue, raw)
    start(queue, "j1")
    start(queue, "j1")
    assert requeue(queue, "j1", raw, undo_start=True) == 1
    assert queue.held() == []
    assert queue.client.lrange(keys.ready, 0, -1) == [b"waiting-2", b"waiting-1", raw]
    fields = record(queue.client, keys, "j1")
    assert (fields["attempts"], fields["status"]) == ("1", "queued")
    assert "start_token" not in fields


def test_requeue_with_undo_start_never_goes_below_zero_nor_creates_a_record(
    queue: SyncQueue, keys: QueueKeys
) -> None:
    raw = raw_job("j1")
    hold(queue, raw, raw)
    assert requeue(queue, "j1", raw, undo_start=True) == 1
    assert not queue.client.exists(keys.job("j1"))
    queue.client.hset(keys.job("j1"), "status", "running")  # a record without attempts
    assert requeue(queue, "j1", raw, undo_start=True) == 1
    assert record(queue.client, keys, "j1") == {"status": "queued"}
    queue.client.hset(keys.job("j1"), "attempts", 0)
    hold(queue, raw)
    assert requeue(queue, "j1", raw, undo_start=True) == 1
    assert record(queue.client, keys, "j1") == {"status": "queued", "attempts": "0"}
    assert queue.client.llen(keys.ready) == 3


def test_requeue_keeping_the_start_keeps_the_count_and_sets_status_queued(
    queue: SyncQueue, keys: QueueKeys
) -> None:
    """A job given back by the consumer: its counted start (if any) stands."""
    raw = raw_job("j1")
    hold(queue, raw)
    start(queue, "j1")
    start(queue, "j1")
    assert requeue(queue, "j1", raw, undo_start=False) == 1
    assert queue.held() == []
    assert queue.client.lrange(keys.ready, 0, -1) == [raw]
    fields = record(queue.client, keys, "j1")
    assert (fields["attempts"], fields["status"]) == ("2", "queued")


def test_requeue_keeping_the_start_creates_no_record(queue: SyncQueue, keys: QueueKeys) -> None:
    raw = raw_job("j1")
    hold(queue, raw)
    assert requeue(queue, "j1", raw, undo_start=False) == 1
    assert not queue.client.exists(keys.job("j1"))
    assert queue.client.lrange(keys.ready, 0, -1) == [raw]


@pytest.mark.parametrize("undo_start", [True, False])
def test_requeue_of_a_job_no_longer_held_changes_nothing(
    queue: SyncQueue, keys: QueueKeys, undo_start: bool
) -> None:
    raw = raw_job("j1")
    hold(queue, raw)
    start(queue, "j1")
    queue.client.lrem(keys.processing(WORKER), 1, raw)
    before = record(queue.client, keys, "j1")
    assert requeue(queue, "j1", raw, undo_start=undo_start) == 0
    assert not queue.client.exists(keys.ready)
    assert record(queue.client, keys, "j1") == before


def test_adopt_replaces_the_raw_job_with_the_stamped_one(queue: SyncQueue) -> None:
    raw = orjson.dumps({"task": "echo"})
    stamped = raw_job("new-id")
    hold(queue, raw, b"other")
    assert queue.run(queue.protocol.adopt(raw, stamped)) == 1
    assert sorted(queue.held()) == sorted([b"other", stamped])


def test_adopt_of_a_job_no_longer_held_changes_nothing(queue: SyncQueue) -> None:
    raw = orjson.dumps({"task": "echo"})
    assert queue.run(queue.protocol.adopt(raw, raw_job("x"))) == 0
    assert queue.held() == []


# --- recover and promote (the event loop's housekeeping) ------------------------------------


def test_recover_moves_a_dead_owners_jobs_back_oldest_first(
    queue: SyncQueue, redis_url: str, keys: QueueKeys
) -> None:
    lost = other_worker(queue, "w-lost")
    a, b, c = raw_job("a"), raw_job("b"), raw_job("c")
    hold(lost, a)
    hold(lost, b)
    hold(lost, c)  # taken in the order a, b, c
    queue.client.lpush(keys.ready, b"waiting")
    found = on_event_loop(redis_url, queue.protocol, lambda q: q.recover("w-lost"))
    assert found == Recovered(requeued=3)  # none had started there: no record says so
    assert lost.held() == []
    # The consuming end is the right: a runs first, then b and c, then what waited.
    assert queue.client.lrange(keys.ready, 0, -1) == [b"waiting", c, b, a]


def test_recover_leaves_a_live_owners_jobs_alone(
    queue: SyncQueue, redis_url: str, keys: QueueKeys
) -> None:
    busy = other_worker(queue, "w-busy")
    hold(busy, raw_job("a"))
    queue.client.set(keys.worker("w-busy"), b"{}", px=60_000)  # its heartbeat
    found = on_event_loop(redis_url, queue.protocol, lambda q: q.recover("w-busy"))
    assert found == Recovered(alive=True)
    assert busy.held() == [raw_job("a")]
    assert not queue.client.exists(keys.ready)


def test_recover_of_a_dead_owner_holding_nothing(queue: SyncQueue, redis_url: str) -> None:
    assert on_event_loop(redis_url, queue.protocol, lambda q: q.recover("w-gone")) == Recovered()


# --- suspects: recovery's verdicts, trials, the start gate (docs/reliability.md#blame) -----


def lose_worker(queue: SyncQueue, worker_id: str, ran: list[str], *, group: int | None = None,
                taken: tuple[str, ...] = ()) -> SyncQueue:  # fmt: skip
    """A worker `worker_id` that started the jobs `ran` (in one batch, or a trial of `group`)
    and took the jobs `taken` without starting them, then died."""
    lost = other_worker(queue, worker_id)
    hold(lost, *(raw_job(job_id) for job_id in [*taken, *ran]))
    if ran:
        start_batch(lost, [job_start(job_id) for job_id in ran], start_token("t-"), group)
    return lost


def recover_on_loop(redis_url: str, queue: SyncQueue, owner: str) -> Recovered:
    return on_event_loop(redis_url, queue.protocol, lambda q: q.recover(owner))


def suspects(queue: SyncQueue, keys: QueueKeys) -> dict[str, float]:
    found = queue.client.zrange(keys.suspects, 0, -1, withscores=True)
    return {orjson.loads(raw)["id"]: score for raw, score in found}


def test_jobs_running_on_a_lost_worker_become_suspects_and_their_loss_is_forgiven(
    queue: SyncQueue, redis_url: str, keys: QueueKeys
) -> None:
    lose_worker(queue, "w-lost", [f"r{i}" for i in range(5)], taken=("not-started",))
    found = recover_on_loop(redis_url, queue, "w-lost")
    assert found == Recovered(requeued=1, suspects=5, blamed=0)
    # Lost five together: each may run again in a group of at most three.
    assert suspects(queue, keys) == {f"r{i}": 3 for i in range(5)}
    assert queue.client.lrange(keys.ready, 0, -1) == [raw_job("not-started")]
    for i in range(5):
        found_record = record(queue.client, keys, f"r{i}")
        assert (found_record["attempts"], found_record["forgiven"]) == ("1", "1")
    assert "forgiven" not in record(queue.client, keys, "not-started")


def test_a_job_lost_while_it_ran_alone_is_blamed(
    queue: SyncQueue, redis_url: str, keys: QueueKeys
) -> None:
    lose_worker(queue, "w-alone", ["culprit"], group=1)
    assert recover_on_loop(redis_url, queue, "w-alone") == Recovered(suspects=1, blamed=1)
    assert suspects(queue, keys) == {"culprit": 1}
    found = record(queue.client, keys, "culprit")
    assert (found["attempts"], found.get("forgiven"), found["group"]) == ("1", None, "1")


def test_a_trial_group_lost_again_is_halved(
    queue: SyncQueue, redis_url: str, keys: QueueKeys
) -> None:
    lose_worker(queue, "w-trial", ["a", "b", "c", "d"], group=4)
    assert recover_on_loop(redis_url, queue, "w-trial").suspects == 4
    assert suspects(queue, keys) == {"a": 2, "b": 2, "c": 2, "d": 2}


def test_a_trial_takes_the_suspects_of_the_smallest_bound_and_no_ready_job(
    queue: SyncQueue, keys: QueueKeys
) -> None:
    queue.client.zadd(keys.suspects, {raw_job("big1"): 8, raw_job("small"): 1, raw_job("big2"): 8})
    queue.client.lpush(keys.ready, raw_job("ready"))
    ordinary = queue.take(10)
    assert (ordinary.jobs, ordinary.suspects) == ([], 3)  # suspects first
    trial = queue.take(10, trial=True)
    assert (trial.jobs, trial.suspects) == ([raw_job("small")], 2)  # alone: its bound is 1
    trial = queue.take(10, trial=True)
    assert (sorted(trial.jobs), trial.suspects) == (sorted([raw_job("big1"), raw_job("big2")]), 0)
    assert len(queue.held()) == 3
    assert queue.take(10).jobs == [raw_job("ready")]


def test_a_trial_takes_no_more_than_the_slots_it_has(queue: SyncQueue, keys: QueueKeys) -> None:
    queue.client.zadd(keys.suspects, {raw_job(f"s{i}"): 8 for i in range(5)})
    assert len(queue.take(2, trial=True).jobs) == 2


def test_start_keeps_the_group_of_a_trial_and_clears_it_for_an_ordinary_run(
    queue: SyncQueue, keys: QueueKeys
) -> None:
    hold(queue, raw_job("j"))
    start_batch(queue, [job_start("j")], start_token("t-"), group=3)
    assert record(queue.client, keys, "j")["group"] == "3"
    start_batch(queue, [job_start("j")], start_token("t-"))
    assert "group" not in record(queue.client, keys, "j")


def test_start_refuses_a_job_whose_attempts_are_held_against_it_and_used_up(
    queue: SyncQueue, keys: QueueKeys
) -> None:
    hold(queue, raw_job("poison"), raw_job("forgiven"))
    queue.client.hset(keys.job("poison"), mapping={"attempts": 4, "forgiven": 1})
    queue.client.hset(keys.job("forgiven"), mapping={"attempts": 4, "forgiven": 2})
    reply = queue.run(
        queue.protocol.start([job_start("poison"), job_start("forgiven")], start_token("t-"), 1)
    )
    # poison: 3 of 3 attempts held against it, not started (minus the attempts made);
    # forgiven: 2 of 3 held, so its fifth start is its third attempt.
    assert started(reply) == [Started(-4, 1), Started(5, 2)]
    assert record(queue.client, keys, "poison")["attempts"] == "4"
    assert record(queue.client, keys, "poison").get("status") is None


def test_recover_own_takes_back_an_earlier_life_of_the_same_worker_id(
    queue: SyncQueue, keys: QueueKeys
) -> None:
    hold(queue, raw_job("taken"))
    hold(queue, raw_job("ran"))
    start_batch(queue, [job_start("ran")], start_token("t-"))
    queue.client.set(keys.worker(WORKER), b"{}", px=60_000)  # alive again, in a new life
    assert queue.recover_own() == Recovered(requeued=1, suspects=1)
    assert queue.held() == []
    assert suspects(queue, keys) == {"ran": 1}


def test_recover_reads_again_when_the_list_changed_and_never_moves_a_job_twice(
    queue: SyncQueue, keys: QueueKeys
) -> None:
    lost = lose_worker(queue, "w-x", ["a"])
    stale = queue.run(queue.protocol.recover("w-x", []))  # read nothing: the list has one job
    assert recovered(stale) == Recovered(changed=True)
    call = queue.protocol.recover("w-x", lost.held())
    assert recovered(queue.run(call)) == Recovered(suspects=1)
    assert recovered(queue.run(queue.protocol.recover("w-x", []))) == Recovered()


def test_promote_moves_due_jobs_and_returns_the_next_due_time(
    queue: SyncQueue, redis_url: str, keys: QueueKeys
) -> None:
    due, later = raw_job("due"), raw_job("later")
    later_ms = int(time.time() * 1000) + 60_000
    queue.client.lpush(keys.ready, b"waiting")
    queue.client.zadd(keys.delayed, {due: 1_000, later: later_ms})
    assert on_event_loop(redis_url, queue.protocol, lambda q: q.promote()) == later_ms
    assert queue.client.lrange(keys.ready, 0, -1) == [b"waiting", due]
    assert queue.client.zrange(keys.delayed, 0, -1) == [later]
    queue.client.zrem(keys.delayed, later)
    assert on_event_loop(redis_url, queue.protocol, lambda q: q.promote()) == -1


# --- the record, as the producer reads it ----------------------------------------------------


def test_the_record_of_an_acknowledged_job_reads_back_through_the_producer(
    queue: SyncQueue, redis_url: str, keys: QueueKeys
) -> None:
    raw = raw_job("j1")
    hold(queue, raw)
    before = server_micros(queue.client)
    start(queue, "j1", enqueued_at=1_699_999_999.0)
    after = server_micros(queue.client)
    settle(redis_url, queue.protocol, ack(queue.protocol, "j1", raw, [1, "two"], 1))
    status = Producer(client=queue.client, queue=keys.queue).status("j1")
    assert status is not None
    assert status["status"] == "succeeded"
    assert (status["attempts"], status["max_attempts"]) == (1, 3)
    assert status["result"] == [1, "two"]
    assert status["enqueued_at"] == 1_699_999_999.0
    assert before / 1e6 - 1e-6 <= status["started_at"] <= after / 1e6 + 1e-6
    assert "start_token" not in status


def test_a_start_token_begins_with_its_prefix_and_is_new_each_time() -> None:
    tokens = {start_token("life-a-") for _ in range(100)}
    assert len(tokens) == 100
    assert all(token.startswith("life-a-") for token in tokens)


@pytest.mark.parametrize("outcome", ["ack", "retry", "dead"])
def test_an_outcome_sent_again_after_a_lost_reply_is_reported_once_written(
    queue: SyncQueue, redis_url: str, keys: QueueKeys, outcome: str
) -> None:
    """The first sending ran (its reply was lost with the connection); the second finds the
    job gone from the processing list, but settled by this very attempt: it answers 1 and
    writes nothing twice."""
    raw = raw_job("j1")
    hold(queue, raw)
    attempt = start(queue, "j1")
    protocol = queue.protocol
    call = {
        "ack": protocol.ack("j1", raw, b'"done"', attempt),
        "retry": protocol.retry("j1", raw, FAILURE, attempt, 1_000),
        "dead": dead_call(protocol, "j1", raw, attempt),
    }[outcome]
    assert settle(redis_url, protocol, call) == [1]
    written = record(queue.client, keys, "j1")
    assert settle(redis_url, protocol, call) == [1]
    assert record(queue.client, keys, "j1") == written
    assert queue.client.llen(keys.dead) == (1 if outcome == "dead" else 0)
    assert queue.client.zcard(keys.delayed) == (1 if outcome == "retry" else 0)


def test_a_later_attempt_is_not_taken_for_a_lost_reply(
    queue: SyncQueue, redis_url: str, keys: QueueKeys
) -> None:
    """Settled by attempt 1 and started again (attempt 2): attempt 1's ack, sent again,
    answers 0."""
    raw = raw_job("j1")
    hold(queue, raw)
    first = start(queue, "j1")
    ack = queue.protocol.ack("j1", raw, b'"done"', first)
    assert settle(redis_url, queue.protocol, ack) == [1]
    hold(queue, raw)
    assert start(queue, "j1") == first + 1
    assert settle(redis_url, queue.protocol, ack) == [0]
    assert queue.held() == [raw]
