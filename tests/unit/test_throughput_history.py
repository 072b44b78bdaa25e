"""The worker's side of the throughput history: counting ended jobs per queue and minute
(`ThroughputCounter`), and writing the counts into Redis with the heartbeat (`HistoryWriter`,
worker/jobs/lua/history.lua); on fakeredis, which runs the Lua script."""

from __future__ import annotations

import threading
from typing import Any

import fakeredis
import pytest
import redis

from producer.history import HISTORY_TTL_S, MINUTES_KEPT, history_field, read_history
from producer.keys import QueueKeys
from producer.scripts import ScriptCall, SyncScripts
from worker.jobs.protocol import WORKER_SCRIPTS, QueueProtocol
from worker.jobs.throughput import ThroughputCounter
from worker.process.history_writer import HistoryWriter

MINUTE = 30_000_000  # a unix minute (some day in 2027)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, minute: int = MINUTE, second: float = 10.0) -> None:
        self.now = minute * 60 + second

    def __call__(self) -> float:
        return self.now

    def next_minute(self) -> None:
        self.now += 60


class CountedScripts:
    """The real scripts, with each call kept, and failures injected on demand: a call
    refused before it reaches Redis, as when the connection drops."""

    def __init__(self, client: fakeredis.FakeRedis) -> None:
        self._real = SyncScripts(client, WORKER_SCRIPTS)
        self.calls: list[ScriptCall] = []
        self.fail_next: list[bool] = []

    def run(self, call: ScriptCall) -> Any:
        if self.fail_next and self.fail_next.pop(0):
            raise redis.ConnectionError("injected: the connection dropped before the call")
        self.calls.append(call)
        return self._real.run(call)


class Rig:
    def __init__(self, client: fakeredis.FakeRedis, *queues: str) -> None:
        self.client = client
        self.clock = Clock()
        self.counter = ThroughputCounter(self.clock)
        self.keys = {queue: QueueKeys(queue) for queue in queues}
        self.scripts = CountedScripts(client)
        protocols = {queue: QueueProtocol(keys, "w-1", 600) for queue, keys in self.keys.items()}
        self.writer = HistoryWriter(
            self.counter,
            protocols,
            self.scripts,  # type: ignore[arg-type]  # runs calls as SyncScripts does
            self.clock,
        )

    def hash(self, queue: str) -> dict[str, int]:
        fields = self.client.hgetall(self.keys[queue].history)
        return {name.decode(): int(value) for name, value in fields.items()}

    def totals(self, queue: str) -> tuple[int, int]:
        [history] = read_history(
            self.client, [self.keys[queue]], now=self.clock(), minutes=MINUTES_KEPT
        ).values()
        return sum(m.ok for m in history), sum(m.failed for m in history)


@pytest.fixture
def rig(fake_redis: fakeredis.FakeRedis) -> Rig:
    return Rig(fake_redis, "emails", "reports")


# -- counting ------------------------------------------------------------------------------


def test_jobs_are_counted_per_queue_minute_and_outcome() -> None:
    clock = Clock()
    counter = ThroughputCounter(clock)
    counter.succeeded("emails")
    counter.succeeded("emails")
    counter.failed("emails")
    counter.succeeded("reports")
    clock.next_minute()
    counter.failed("emails")
    assert counter.take() == {
        ("emails", MINUTE, "ok"): 2,
        ("emails", MINUTE, "failed"): 1,
        ("reports", MINUTE, "ok"): 1,
        ("emails", MINUTE + 1, "failed"): 1,
    }
    assert counter.take() == {}  # taken: nothing left


def test_counts_given_back_add_to_those_counted_since() -> None:
    counter = ThroughputCounter(Clock())
    counter.succeeded("emails")
    taken = counter.take()
    counter.succeeded("emails")
    counter.give_back(taken)
    assert counter.take() == {("emails", MINUTE, "ok"): 2}


def test_counts_older_than_the_history_keeps_are_forgotten() -> None:
    """A long outage (nothing written) cannot make the counts pile up."""
    clock = Clock()
    counter = ThroughputCounter(clock)
    counter.succeeded("emails")
    for _ in range(MINUTES_KEPT - 1):
        clock.next_minute()
    counter.failed("emails")
    still = counter.take()
    assert ("emails", MINUTE, "ok") in still  # the oldest minute kept
    counter.give_back(still)
    clock.next_minute()  # MINUTE is no longer kept
    counter.failed("emails")
    assert set(counter.take()) == {
        ("emails", MINUTE + MINUTES_KEPT - 1, "failed"),
        ("emails", MINUTE + MINUTES_KEPT, "failed"),
    }


def test_counts_from_several_threads_are_all_kept_while_being_taken() -> None:
    counter = ThroughputCounter()
    taken: list[dict[Any, int]] = []
    done = threading.Event()

    def count() -> None:
        for _ in range(20_000):
            counter.succeeded("q")

    def take() -> None:
        while not done.is_set():
            taken.append(counter.take())

    taker = threading.Thread(target=take)
    taker.start()
    counters = [threading.Thread(target=count) for _ in range(4)]
    for thread in counters:
        thread.start()
    for thread in counters:
        thread.join()
    done.set()
    taker.join()
    taken.append(counter.take())
    assert sum(sum(counts.values()) for counts in taken) == 80_000


# -- writing -------------------------------------------------------------------------------


def test_nothing_is_sent_when_no_job_ended(rig: Rig) -> None:
    rig.writer.write()
    rig.clock.next_minute()
    rig.writer.write()
    assert rig.scripts.calls == []
    assert not rig.client.exists(rig.keys["emails"].history)


def test_counts_go_to_their_queue_s_hash_one_call_per_queue(rig: Rig) -> None:
    for _ in range(3):
        rig.counter.succeeded("emails")
    rig.counter.failed("emails")
    rig.writer.write()
    assert [call.keys for call in rig.scripts.calls] == [[rig.keys["emails"].history]]
    assert rig.hash("emails") == {f"{MINUTE}:ok": 3, f"{MINUTE}:failed": 1}
    assert HISTORY_TTL_S - 5 < rig.client.ttl(rig.keys["emails"].history) <= HISTORY_TTL_S
    rig.counter.succeeded("emails")
    rig.counter.succeeded("reports")
    rig.writer.write()
    assert rig.hash("emails") == {f"{MINUTE}:ok": 4, f"{MINUTE}:failed": 1}
    assert rig.hash("reports") == {f"{MINUTE}:ok": 1}
    assert len(rig.scripts.calls) == 3
    rig.writer.write()  # nothing new
    assert len(rig.scripts.calls) == 3


def test_counts_a_failed_write_could_not_send_go_with_the_next_once(rig: Rig) -> None:
    rig.counter.succeeded("emails")
    rig.counter.failed("reports")
    rig.scripts.fail_next = [False, True]  # emails written, then the connection drops
    with pytest.raises(redis.ConnectionError):
        rig.writer.write()
    assert rig.totals("emails") == (1, 0)
    assert rig.totals("reports") == (0, 0)
    rig.counter.succeeded("reports")
    rig.scripts.fail_next = [True]  # Redis still down: nothing written, nothing lost
    with pytest.raises(redis.ConnectionError):
        rig.writer.write()
    rig.writer.write()
    assert rig.totals("emails") == (1, 0)  # not written twice
    assert rig.totals("reports") == (1, 1)
    rig.writer.write()
    assert rig.totals("reports") == (1, 1)


def test_minutes_the_history_no_longer_keeps_are_deleted_once_a_minute(rig: Rig) -> None:
    history = rig.keys["emails"].history
    oldest_kept = MINUTE - MINUTES_KEPT + 1
    rig.client.hset(
        history,
        mapping={
            history_field(MINUTE - 500, "ok"): 9,  # from before a quiet spell
            history_field(oldest_kept - 1, "failed"): 9,
            history_field(oldest_kept, "ok"): 2,  # the oldest minute kept
            history_field(MINUTE - 1, "ok"): 5,
        },
    )
    rig.counter.succeeded("emails")
    rig.writer.write()
    assert rig.hash("emails") == {
        f"{oldest_kept}:ok": 2,
        f"{MINUTE - 1}:ok": 5,
        f"{MINUTE}:ok": 1,
    }
    assert rig.scripts.calls[-1].args[0] == oldest_kept
    # Within the same minute the hash is not looked through again...
    rig.counter.succeeded("emails")
    rig.writer.write()
    assert rig.scripts.calls[-1].args[0] == ""
    # ...the next minute it is: the oldest minute kept goes too.
    rig.clock.next_minute()
    rig.counter.failed("emails")
    rig.writer.write()
    assert rig.scripts.calls[-1].args[0] == oldest_kept + 1
    assert rig.hash("emails") == {
        f"{MINUTE - 1}:ok": 5,
        f"{MINUTE}:ok": 2,
        f"{MINUTE + 1}:failed": 1,
    }
    assert rig.totals("emails") == (7, 1)


def test_counts_older_than_the_history_keeps_are_not_sent(rig: Rig) -> None:
    rig.counter.succeeded("emails")  # in MINUTE
    taken = rig.counter.take()  # as if a write had failed then, and Redis stayed down
    for _ in range(MINUTES_KEPT):
        rig.clock.next_minute()
    rig.counter.give_back(taken)
    rig.counter.failed("emails")
    rig.writer.write()
    assert rig.hash("emails") == {f"{MINUTE + MINUTES_KEPT}:failed": 1}
