"""The consumer thread in-process, on the real Redis of the session: the concurrency cap,
every lease given back, and the races the fault suite found, each made to happen on purpose
by a fault at one seam of the real `SyncQueue` (tests.unit.inprocess.SeamQueue).

Each test builds a `ConsumerThread` the way `Worker` does (a `SyncQueue` on a blocking client
of its own, a `JobPath` with real `Slots`, `RunningJobs`, an `EventLoopThread` and a real
`JobRunner` writing outcomes to Redis), with a stand-in for the heartbeat thread whose
freshness the test controls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from structlog.testing import capture_logs

from producer import Producer
from producer.connection import async_client, sync_client
from producer.keys import QueueKeys
from producer.scripts import ScriptCall
from tests.conftest import wait_for
from tests.unit.inprocess import (
    TRACKER,
    Fault,
    SeamAsyncQueue,
    SeamQueue,
    Tracker,
    blocked_in_pop,
    counted_outcomes,
    dead_entries,
    events,
    job,
    link_dropped,
    make_settings,
    push,
    ready_ids,
    record,
    registry,
    reply_lost,
    returns_within,
    server_error,
)
from worker import Backoff
from worker.jobs.consumer import SOCKET_TIMEOUT_MARGIN, ConsumerThread
from worker.jobs.decode import ReceivedJob, RejectedJob, decode_job
from worker.jobs.handoff import JobPath
from worker.jobs.outcomes import OutcomeStore
from worker.jobs.protocol import JobStart, QueueProtocol, start_token
from worker.jobs.queues import SyncQueue, pipelined_worker_scripts
from worker.jobs.runner import JobRunner
from worker.jobs.running import RunningJob, RunningJobs
from worker.jobs.slots import Slots
from worker.jobs.throughput import ThroughputCounter
from worker.metrics import WorkerMetrics
from worker.process.loop_thread import EventLoopThread
from worker.redis_health import AsyncOutages, RedisHealth, SyncOutages
from worker.tasks.http_session import SharedHttpSession

pytestmark = pytest.mark.real_redis

REGISTRY = registry()
Decode = Callable[[bytes, QueueKeys], ReceivedJob | RejectedJob]


class Liveness:
    """Stands in for the heartbeat thread: the consumer asks it only whether taking a job is
    safe (`fresh`) and how long its liveness keys surely live (`remaining_life`)."""

    def __init__(self, life: float = 60.0, interval: float = 1.0) -> None:
        self.life = life
        self.interval = interval

    def remaining_life(self) -> float:
        return self.life

    def fresh(self) -> bool:
        return self.remaining_life() > self.interval


class Rig:
    """One worker's job path, built by hand; `consumer()` adds consumer threads to it."""

    def __init__(self, redis_url: str, queues: Sequence[str], capacity: int) -> None:
        self.redis_url = redis_url
        self.settings = make_settings(redis_url, queues, concurrency=capacity)
        self.worker_id = self.settings.worker_id
        self.keys = {queue: QueueKeys(queue) for queue in queues}
        self.slots = Slots(capacity)
        self.running = RunningJobs()
        self.stop = threading.Event()
        self.liveness = Liveness()
        self.metrics = WorkerMetrics(known_tasks=REGISTRY.names(), process_metrics=False)
        self.health = RedisHealth(self.settings.redacted_redis_url)
        self.loop = EventLoopThread(name="test-loop")
        self.loop.start()
        self.executor = ThreadPoolExecutor(4, thread_name_prefix="test-sync")
        self.http = SharedHttpSession(4)
        self.async_redis = async_client(redis_url)
        scripts = pipelined_worker_scripts(self.async_redis, "")
        self.async_queues = {
            queue: SeamAsyncQueue(self.protocol(queue), scripts, self.async_redis)
            for queue in queues
        }
        store = OutcomeStore(self.async_queues, AsyncOutages(self.async_redis, self.health))
        self.throughput = ThroughputCounter()  # shared by the runner and the consumers
        self.runner = JobRunner(
            store, self.executor, self.http, Backoff(10, 2, 10), self.metrics, self.throughput
        )
        self.consumers: list[ConsumerThread] = []
        self._clients: list[redis.Redis] = []

    def protocol(self, queue: str) -> QueueProtocol:
        return QueueProtocol(self.keys[queue], self.worker_id, self.settings.result_ttl)

    def processing(self, queue: str) -> str:
        return self.keys[queue].processing(self.worker_id)

    def decode(self, raw: bytes, keys: QueueKeys) -> ReceivedJob | RejectedJob:
        return decode_job(raw, keys, REGISTRY, self.settings)

    def consumer(
        self,
        queue: str,
        *,
        faults: dict[str, Sequence[Fault]] | None = None,
        burst: bool = False,
        poll_timeout: float = 1.0,
        decode: Decode | None = None,
        start: bool = True,
    ) -> tuple[ConsumerThread, SeamQueue]:
        client = sync_client(
            self.redis_url, retries=0, socket_timeout=poll_timeout + SOCKET_TIMEOUT_MARGIN
        )
        self._clients.append(client)
        seams = SeamQueue(self.protocol(queue), client, faults or {})
        side_client = sync_client(self.redis_url, retries=0, socket_timeout=10)
        self._clients.append(side_client)
        self.async_queues[queue].attach(seams, side_client)  # its jobs' starts, on the loop
        path = JobPath(
            slots=self.slots,
            running=self.running,
            loop=self.loop,
            start_jobs=self.runner.start,
            launch=self.runner.launch,
            decode=decode or self.decode,
            heartbeat=self.liveness,  # type: ignore[arg-type]  # what the consumer asks of it
            metrics=self.metrics,
            stop=self.stop,
            throughput=self.throughput,
        )
        consumer = ConsumerThread(
            seams,
            path,
            SyncOutages(client, self.health),
            poll_timeout=poll_timeout,
            burst=burst,
        )
        self.consumers.append(consumer)
        if start:
            consumer.start()
        return consumer, seams

    def wait_settled(self, timeout: float = 10.0) -> None:
        """Stop the consumers (an idle one holds the slot of its next job while it waits in
        its pop); then every job handed to the loop is done and every lease is back."""
        self.stop_consumers(timeout)
        assert self.running.wait_empty(timeout), f"{len(self.running)} job(s) still running"
        assert self.slots.in_use == 0

    def stop_consumers(self, timeout: float = 10.0) -> None:
        self.stop.set()
        for consumer in self.consumers:
            consumer.wake(self.redis_url)
        for consumer in self.consumers:
            if consumer.is_alive():
                consumer.join(timeout)
            assert not consumer.is_alive(), f"{consumer.name} did not stop"

    def close(self) -> None:
        try:
            self.stop_consumers()
        finally:
            if len(self.running):  # each cancelled job puts itself back, as at shutdown
                self.loop.call_soon(self.running.cancel_all)
                self.running.wait_empty(10)
            self.loop.run(self._close_on_loop(), timeout=10)
            self.executor.shutdown(wait=True, cancel_futures=True)
            # As in the worker; under a time limit, for the reason given in test_shutdown_steps.
            returns_within(20, self.loop.stop, "EventLoopThread.stop()")
            for client in self._clients:
                client.close()

    async def _close_on_loop(self) -> None:
        await self.http.close()
        await self.async_redis.aclose()


@pytest.fixture
def tracker() -> Tracker:
    TRACKER.reset()
    return TRACKER


@pytest.fixture
def make_rig(redis_url: str, tracker: Tracker) -> Iterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def make(queues: Sequence[str], capacity: int = 4) -> Rig:
        rig = Rig(redis_url, queues, capacity)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()


@pytest.fixture
def rig(make_rig: Callable[..., Rig], queue_name: str) -> Rig:
    return make_rig([queue_name])


def ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i:04d}" for i in range(count)]


def push_work(
    client: redis.Redis, keys: QueueKeys, job_ids: Sequence[str], seconds: float = 0.0
) -> None:
    push(client, keys, *(job("inproc.work", job_id, seconds) for job_id in job_ids))


def statuses(client: redis.Redis, keys: QueueKeys, job_ids: Sequence[str]) -> list[bytes | None]:
    pipe = client.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hget(keys.job(job_id), "status")
    return pipe.execute()


def all_succeeded(client: redis.Redis, keys: QueueKeys, job_ids: Sequence[str]) -> bool:
    return statuses(client, keys, job_ids) == [b"succeeded"] * len(job_ids)


def attempts_of(client: redis.Redis, keys: QueueKeys, job_ids: Sequence[str]) -> set[int]:
    pipe = client.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hget(keys.job(job_id), "attempts")
    return {int(value) for value in pipe.execute()}


def assert_queue_empty(client: redis.Redis, rig: Rig, queue: str) -> None:
    keys = rig.keys[queue]
    assert client.llen(keys.ready) == 0
    assert client.llen(rig.processing(queue)) == 0


# -- the cap --------------------------------------------------------------------------------


class Sampler(threading.Thread):
    """Reads, until stopped, the most jobs held in processing lists and the most slots leased."""

    def __init__(self, client: redis.Redis, lists: list[str], slots: Slots) -> None:
        super().__init__(name="test-sampler", daemon=True)
        self._client, self._lists, self._slots = client, lists, slots
        self.halt = threading.Event()
        self.most_held = 0
        self.most_leased = 0

    def run(self) -> None:
        while not self.halt.is_set():
            pipe = self._client.pipeline(transaction=False)
            for name in self._lists:
                pipe.llen(name)
            self.most_held = max(self.most_held, sum(pipe.execute()))
            self.most_leased = max(self.most_leased, self._slots.in_use)
            self.halt.wait(0.002)


def test_the_cap_holds_with_a_backlog_of_hundreds(
    rig: Rig, redis_client: redis.Redis, queue_name: str, tracker: Tracker
) -> None:
    keys = rig.keys[queue_name]
    job_ids = ids("cap", 300)
    push_work(redis_client, keys, job_ids, 0.005)
    sampler = Sampler(redis_client, [rig.processing(queue_name)], rig.slots)
    sampler.start()
    try:
        rig.consumer(queue_name)
        wait_for(lambda: all_succeeded(redis_client, keys, job_ids), timeout=20)
    finally:
        sampler.halt.set()
        sampler.join()
    rig.wait_settled()

    assert tracker.most == rig.slots.capacity  # the cap is used, and never exceeded
    assert sampler.most_leased <= rig.slots.capacity
    # No job leaves the ready list while the worker has no room for it.
    assert sampler.most_held <= rig.slots.capacity
    assert tracker.runs() == len(job_ids)
    assert attempts_of(redis_client, keys, job_ids) == {1}
    assert_queue_empty(redis_client, rig, queue_name)


# -- suspects (docs/reliability.md#blame) ------------------------------------------------------


def add_suspects(client: redis.Redis, keys: QueueKeys, job_ids: list[str], bound: int) -> None:
    client.zadd(keys.suspects, {job("inproc.work", job_id, 0.05): bound for job_id in job_ids})


def test_suspects_run_first_in_groups_with_nothing_beside_them(
    rig: Rig, redis_client: redis.Redis, queue_name: str, tracker: Tracker
) -> None:
    keys = rig.keys[queue_name]
    suspect_ids, plain = ids("suspect", 6), ids("plain", 4)
    add_suspects(redis_client, keys, suspect_ids, bound=2)
    push_work(redis_client, keys, plain, 0.05)
    with capture_logs() as logs:
        rig.consumer(queue_name)
        wait_for(lambda: all_succeeded(redis_client, keys, [*suspect_ids, *plain]))
        rig.wait_settled()

    assert [line["group"] for line in events(logs, "job.trial")] == [2, 2, 2]
    for suspect in suspect_ids:  # at most its pair partner beside it, never a plain job
        beside = tracker.beside.get(suspect, set())
        assert len(beside) <= 1, (suspect, beside)
        assert beside <= set(suspect_ids), (suspect, beside)
    order = [job_id for _, job_id in tracker.order]
    last_suspect = max(i for i, job_id in enumerate(order) if job_id in suspect_ids)
    first_plain = min(i for i, job_id in enumerate(order) if job_id in plain)
    assert last_suspect < first_plain
    assert tracker.most == rig.slots.capacity  # the plain jobs, afterwards
    assert not redis_client.exists(keys.suspects)
    assert_queue_empty(redis_client, rig, queue_name)


def test_a_trial_of_one_queue_holds_the_slots_of_the_other_queues_too(
    make_rig: Callable[..., Rig], redis_client: redis.Redis, tracker: Tracker
) -> None:
    rig = make_rig(["trial-a", "busy-b"], capacity=4)
    alone = ids("alone", 2)
    busy = ids("busy", 40)
    push_work(redis_client, rig.keys["busy-b"], busy, 0.02)
    rig.consumer("busy-b")
    wait_for(lambda: tracker.runs() >= 4)  # queue b keeps every slot busy
    add_suspects(redis_client, rig.keys["trial-a"], alone, bound=1)
    rig.consumer("trial-a")
    wait_for(lambda: all_succeeded(redis_client, rig.keys["trial-a"], alone))
    wait_for(lambda: all_succeeded(redis_client, rig.keys["busy-b"], busy))
    rig.wait_settled()
    for job_id in alone:  # each ran alone on the worker
        assert tracker.beside.get(job_id, set()) == set(), tracker.beside.get(job_id)


def test_the_leftovers_of_an_earlier_life_are_suspects_and_run_again_forgiven(
    rig: Rig, redis_client: redis.Redis, queue_name: str, tracker: Tracker
) -> None:
    """A worker that comes back with the id of one that died takes its own leftovers back
    at its first take: the jobs that had started are suspects, the others simply ready."""
    keys = rig.keys[queue_name]
    earlier_life = SyncQueue(rig.protocol(queue_name), redis_client)
    ran, taken = ids("ran", 3), ids("taken", 1)
    redis_client.lpush(
        rig.processing(queue_name), *(job("inproc.work", job_id) for job_id in [*taken, *ran])
    )
    starts = [
        JobStart(job_id, job("inproc.work", job_id), "inproc.work", 3, None) for job_id in ran
    ]
    earlier_life.run(earlier_life.protocol.start(starts, start_token("t-"), None))
    with capture_logs() as logs:
        rig.consumer(queue_name)
        wait_for(lambda: all_succeeded(redis_client, keys, [*ran, *taken]))
        rig.wait_settled()

    [recovered] = events(logs, "jobs.recovered")
    assert (recovered["requeued"], recovered["suspects"], recovered["blamed"]) == (1, 3, 0)
    assert [line["group"] for line in events(logs, "job.trial")] == [2, 1]
    assert attempts_of(redis_client, keys, ran) == {2}
    assert {record(redis_client, keys, job_id)["forgiven"] for job_id in ran} == {1}
    assert attempts_of(redis_client, keys, taken) == {1}


def test_consumers_of_two_queues_share_one_cap(
    make_rig: Callable[..., Rig], redis_client: redis.Redis, queue_name: str, tracker: Tracker
) -> None:
    queues = [queue_name, f"{queue_name}-b"]
    rig = make_rig(queues, capacity=3)
    batches = {queue: ids(queue, 80) for queue in queues}
    for queue, job_ids in batches.items():
        push_work(redis_client, rig.keys[queue], job_ids, 0.005)
    sampler = Sampler(redis_client, [rig.processing(queue) for queue in queues], rig.slots)
    sampler.start()
    try:
        for queue in queues:
            rig.consumer(queue)
        # One queue drains first: its consumer then waits in a pop, and the other goes on.
        for queue, job_ids in batches.items():
            wait_for(lambda q=queue, j=job_ids: all_succeeded(redis_client, rig.keys[q], j))
    finally:
        sampler.halt.set()
        sampler.join()
    rig.wait_settled()

    assert tracker.most <= 3
    assert sampler.most_held <= 3
    assert sampler.most_leased <= 3
    assert tracker.runs() == 160


def test_an_idle_consumer_holds_one_slot_while_it_waits_in_its_pop(
    make_rig: Callable[..., Rig], redis_client: redis.Redis, queue_name: str, tracker: Tracker
) -> None:
    """A blocking pop brings one job at most: the slots it cannot fill stay free for the
    worker's other consumers while it waits (up to poll_timeout)."""
    rig = make_rig([queue_name], capacity=4)
    consumer, _ = rig.consumer(queue_name, poll_timeout=30)
    wait_for(lambda: blocked_in_pop(redis_client, consumer._client_id))
    assert rig.slots.in_use == 1


def test_a_busy_queue_is_served_while_the_consumer_of_an_idle_queue_waits_in_its_pop(
    make_rig: Callable[..., Rig], redis_client: redis.Redis, queue_name: str, tracker: Tracker
) -> None:
    idle, busy = queue_name, f"{queue_name}-busy"
    rig = make_rig([idle, busy], capacity=2)
    idle_consumer, _ = rig.consumer(idle, poll_timeout=30)
    wait_for(lambda: blocked_in_pop(redis_client, idle_consumer._client_id))
    job_ids = ids("busy", 5)
    push_work(redis_client, rig.keys[busy], job_ids)
    rig.consumer(busy, poll_timeout=30)
    wait_for(lambda: all_succeeded(redis_client, rig.keys[busy], job_ids), timeout=3)


# -- every lease comes back -----------------------------------------------------------------


def test_bad_input_is_dead_lettered_uncounted_and_every_lease_comes_back(
    rig: Rig, redis_client: redis.Redis, queue_name: str, tracker: Tracker
) -> None:
    keys = rig.keys[queue_name]
    bad = [
        b"not json",
        job("no.such.task", "bad-task"),
        job("inproc.work", "bad-args", "not a number"),
        job("inproc.work", "bad-max", max_attempts=0),
    ]
    good = ids("good", 3)
    push(redis_client, keys, *bad[:2], job("inproc.work", good[0]), *bad[2:])
    push(redis_client, keys, job("inproc.work", good[1]), job("inproc.work", good[2]))
    push(redis_client, keys, job("inproc.work", None))  # no id: the worker gives it one
    with capture_logs() as logs:
        rig.consumer(queue_name)
        wait_for(lambda: redis_client.llen(keys.dead) == len(bad) and tracker.runs() == 4)
        wait_for(lambda: all_succeeded(redis_client, keys, good))
        rig.wait_settled()

    entries = dead_entries(redis_client, keys)
    assert {entry["reason"] for entry in entries} == {
        "invalid_json",
        "unknown_task",
        "invalid_arguments",
        "invalid_envelope",
    }
    for entry in entries:
        assert entry["attempts"] == 0
        found = record(redis_client, keys, entry["id"])
        assert found["status"] == "dead"
        assert "attempts" not in found  # its start was never counted
    assert {entry["id"] for entry in entries} >= {"bad-task", "bad-args", "bad-max"}
    [stamped] = set(tracker.attempts) - set(good)
    assert record(redis_client, keys, stamped)["status"] == "succeeded"
    assert len(events(logs, "job.dead")) == len(bad)
    assert_queue_empty(redis_client, rig, queue_name)
    assert rig.slots.in_use == 0
    # Dead-lettered by the consumer thread, counted for the history like any dead job.
    assert counted_outcomes(rig.throughput, queue_name) == {"failed": len(bad), "ok": 4}


def test_failing_jobs_give_their_lease_back(
    rig: Rig, redis_client: redis.Redis, queue_name: str, tracker: Tracker
) -> None:
    keys = rig.keys[queue_name]
    push(redis_client, keys, *(job("inproc.fail", f"f{i}", max_attempts=1) for i in range(6)))
    push(redis_client, keys, *(job("inproc.fail", f"r{i}") for i in range(6)))  # retried later
    rig.consumer(queue_name)
    wait_for(lambda: redis_client.llen(keys.dead) == 6 and redis_client.zcard(keys.delayed) == 6)
    rig.wait_settled()
    assert {entry["reason"] for entry in dead_entries(redis_client, keys)} == {"handler_error"}
    assert redis_client.llen(rig.processing(queue_name)) == 0


def test_a_bug_in_decoding_dead_letters_the_job_and_serving_goes_on(
    rig: Rig, redis_client: redis.Redis, queue_name: str, tracker: Tracker
) -> None:
    keys = rig.keys[queue_name]

    def buggy_decode(raw: bytes, keys: QueueKeys) -> ReceivedJob | RejectedJob:
        if b"trips-the-bug" in raw:
            raise KeyError("a bug in the worker")
        return rig.decode(raw, keys)

    push(redis_client, keys, job("inproc.work", "trips-the-bug"), job("inproc.work", "fine"))
    with capture_logs() as logs:
        rig.consumer(queue_name, decode=buggy_decode)
        wait_for(lambda: all_succeeded(redis_client, keys, ["fine"]))
        rig.wait_settled()
    [entry] = dead_entries(redis_client, keys)
    assert entry["reason"] == "worker_error"
    assert "a bug in the worker" in entry["error"]
    assert entry["raw"] == job("inproc.work", "trips-the-bug").decode()
    assert events(logs, "consumer.dispatch_error")
    assert_queue_empty(redis_client, rig, queue_name)


def test_an_error_at_start_that_is_not_an_outage_dead_letters_the_batch(
    rig: Rig, redis_client: redis.Redis, queue_name: str, tracker: Tracker
) -> None:
    keys = rig.keys[queue_name]
    push_work(redis_client, keys, ["s1", "s2"])
    with capture_logs() as logs:
        rig.consumer(queue_name, faults={"start": [server_error]})
        wait_for(lambda: redis_client.llen(keys.dead) == 2)
        rig.wait_settled()
    assert {entry["reason"] for entry in dead_entries(redis_client, keys)} == {"worker_error"}
    assert tracker.runs() == 0
    assert events(logs, "job.start_failed")
    assert counted_outcomes(rig.throughput, queue_name) == {"failed": 2}
    assert_queue_empty(redis_client, rig, queue_name)


def test_a_job_whose_outcome_was_not_recorded_goes_back_and_runs_again(
    rig: Rig,
    redis_client: redis.Redis,
    queue_name: str,
    tracker: Tracker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = rig.keys[queue_name]
    failed_once = threading.Event()
    run = rig.runner.run

    async def run_once_without_outcome(running: RunningJob) -> None:
        if not failed_once.is_set():
            failed_once.set()  # as if the outcome could not be written (a bug)
            raise RuntimeError("could not record the outcome")
        await run(running)

    monkeypatch.setattr(rig.runner, "run", run_once_without_outcome)
    push_work(redis_client, keys, ["again"])
    with capture_logs() as logs:
        rig.consumer(queue_name)
        wait_for(lambda: all_succeeded(redis_client, keys, ["again"]))
        rig.wait_settled()
    assert [line["job_id"] for line in events(logs, "job.unrecorded")] == ["again"]
    assert events(logs, "consumer.job_returned")
    assert tracker.attempts["again"] == [2]  # the first start counted: it was handed over
    assert_queue_empty(redis_client, rig, queue_name)


# -- Redis errors at the seams --------------------------------------------------------------

SEAM_CASES = {
    "take-link-dropped": {"take": [link_dropped]},
    "take-reply-lost": {"take": [reply_lost]},
    "take-reply-lost-then-give-back-fails": {"take": [reply_lost], "requeue": [link_dropped]},
    "held-link-dropped": {"held": [link_dropped]},
    "start-link-dropped": {"start": [link_dropped, link_dropped]},
    "start-reply-lost": {"start": [reply_lost]},
    "adopt-link-dropped": {"adopt": [link_dropped]},
    "adopt-reply-lost": {"adopt": [reply_lost]},
    "dead-link-dropped": {"dead": [link_dropped]},
    "dead-reply-lost": {"dead": [reply_lost]},
}


@pytest.mark.parametrize("faults", SEAM_CASES.values(), ids=SEAM_CASES.keys())
def test_a_redis_error_at_a_seam_loses_no_job_counts_nothing_twice_and_leaks_no_lease(
    rig: Rig,
    redis_client: redis.Redis,
    queue_name: str,
    tracker: Tracker,
    faults: dict[str, list[Fault]],
) -> None:
    keys = rig.keys[queue_name]
    good = ids("seam", 4)
    push_work(redis_client, keys, good)
    push(redis_client, keys, b"{bad json", job("inproc.work", None))
    with capture_logs() as logs:
        _, seams = rig.consumer(queue_name, faults=faults)
        wait_for(lambda: all_succeeded(redis_client, keys, good) and tracker.runs() == 5)
        wait_for(lambda: redis_client.llen(keys.dead) == 1)
        rig.wait_settled()

    for seam, injected in faults.items():
        assert seams.calls[seam] > len(injected), f"{seam} was not called again"
    assert attempts_of(redis_client, keys, good) == {1}
    assert all(attempts == [1] for attempts in tracker.attempts.values()), tracker.attempts
    [entry] = dead_entries(redis_client, keys)
    assert (entry["reason"], entry["attempts"]) == ("invalid_json", 0)
    assert_queue_empty(redis_client, rig, queue_name)
    assert rig.health.reachable
    assert events(logs, "redis.unavailable")
    assert events(logs, "redis.recovered")


def test_a_pop_whose_reply_was_lost_puts_its_job_back_uncounted(
    rig: Rig, redis_client: redis.Redis, queue_name: str, tracker: Tracker
) -> None:
    keys = rig.keys[queue_name]
    in_pop = threading.Event()

    def lose_the_pop_reply(real: Callable[[], Any], call: ScriptCall | None) -> Any:
        in_pop.set()
        assert real() is not None  # the job moved into our processing list
        raise redis.ConnectionError("Connection reset by peer (injected: the reply was lost)")

    with capture_logs() as logs:
        rig.consumer(queue_name, faults={"pop": [lose_the_pop_reply]})
        assert in_pop.wait(10)
        push_work(redis_client, keys, ["popped"])
        wait_for(lambda: all_succeeded(redis_client, keys, ["popped"]))
        rig.wait_settled()
    assert tracker.attempts["popped"] == [1]
    assert events(logs, "consumer.job_returned")
    assert_queue_empty(redis_client, rig, queue_name)


def test_stopping_during_an_outage_gives_every_lease_back_and_keeps_the_jobs(
    rig: Rig, redis_client: redis.Redis, queue_name: str, tracker: Tracker
) -> None:
    keys = rig.keys[queue_name]
    push_work(redis_client, keys, ["o1", "o2"])
    _, seams = rig.consumer(queue_name, faults={"start": [link_dropped] * 10_000})
    wait_for(lambda: seams.calls["start"] >= 3)
    rig.stop_consumers()
    # As the worker's shutdown does once its grace period is over: the start, waiting out
    # the outage on the loop, is cancelled.
    rig.loop.call_soon(rig.running.cancel_all)
    rig.wait_settled()
    # Neither run nor lost nor dead: still held, for the next life of the worker or for
    # recovery by another once the heartbeat lapses.
    assert tracker.runs() == 0
    assert redis_client.llen(rig.processing(queue_name)) == 2
    assert redis_client.llen(keys.dead) == 0
    assert not rig.health.reachable


# -- the races the fault suite found ----------------------------------------------------------


def test_jobs_of_a_take_whose_reply_was_lost_go_back_to_ready_uncounted_on_the_next_take(
    rig: Rig, redis_client: redis.Redis, queue_name: str, tracker: Tracker
) -> None:
    keys = rig.keys[queue_name]
    lost = ids("lost", 3)
    push_work(redis_client, keys, lost)
    before_next_take: dict[str, Any] = {}

    def look_before_taking(real: Callable[[], Any], call: ScriptCall | None) -> Any:
        before_next_take.update(
            ready=ready_ids(redis_client, keys),
            held=redis_client.llen(rig.processing(queue_name)),
            records=[record(redis_client, keys, job_id) for job_id in lost],
        )
        return real()

    with capture_logs() as logs:
        rig.consumer(queue_name, faults={"take": [reply_lost, look_before_taking]})
        wait_for(lambda: all_succeeded(redis_client, keys, lost))
        rig.wait_settled()

    # The next take found them in our processing list, held by no coroutine, and put them
    # back at the consuming end of the ready list, in their order, their start uncounted.
    assert before_next_take["ready"] == lost
    assert before_next_take["held"] == 0
    assert all(found.get("attempts") in (None, 0) for found in before_next_take["records"])
    assert len(events(logs, "consumer.job_returned")) == len(lost)
    assert {job_id: tracker.attempts[job_id] for job_id in lost} == {j: [1] for j in lost}
    assert_queue_empty(redis_client, rig, queue_name)


def test_a_start_whose_reply_was_lost_is_sent_again_with_its_token_and_counted_once(
    rig: Rig, redis_client: redis.Redis, queue_name: str, tracker: Tracker
) -> None:
    keys = rig.keys[queue_name]
    push_work(redis_client, keys, ["once-a", "once-b"])
    _, seams = rig.consumer(queue_name, faults={"start": [reply_lost]})
    wait_for(lambda: all_succeeded(redis_client, keys, ["once-a", "once-b"]))
    rig.wait_settled()

    first, again = [call for call in seams.seen if call.script == "start"]
    assert again == first  # the same call: the same token (ARGV[4]) and the same jobs
    assert tracker.attempts == {"once-a": [1], "once-b": [1]}
    assert attempts_of(redis_client, keys, ["once-a", "once-b"]) == {1}


def noting_the_thread(threads: list[str], then: Fault | None = None) -> Fault:
    """A fault for the start call: note which thread sends it, then run it (or `then`)."""

    def fault(real: Callable[[], Any], call: ScriptCall | None) -> Any:
        threads.append(threading.current_thread().name)
        return real() if then is None else then(real, call)

    return fault


def test_a_job_popped_by_an_idle_consumer_is_counted_by_the_consumer_and_run_once(
    rig: Rig, redis_client: redis.Redis, queue_name: str, tracker: Tracker
) -> None:
    keys = rig.keys[queue_name]
    threads: list[str] = []
    consumer, _seams = rig.consumer(
        queue_name, poll_timeout=30, faults={"start": [noting_the_thread(threads)] * 2}
    )
    wait_for(lambda: blocked_in_pop(redis_client, consumer._client_id))
    push_work(redis_client, keys, ["popped"])
    wait_for(lambda: all_succeeded(redis_client, keys, ["popped"]))
    rig.wait_settled()
    assert threads == [consumer.name]  # not the loop's: one round trip less on its path
    assert tracker.attempts == {"popped": [1]}
    assert attempts_of(redis_client, keys, ["popped"]) == {1}
    assert_queue_empty(redis_client, rig, queue_name)


@pytest.mark.parametrize("fault", [reply_lost, link_dropped, server_error])
def test_a_start_the_consumer_could_not_count_is_counted_once_by_the_loop(
    rig: Rig, redis_client: redis.Redis, queue_name: str, tracker: Tracker, fault: Fault
) -> None:
    keys = rig.keys[queue_name]
    threads: list[str] = []
    faults = [noting_the_thread(threads, fault), noting_the_thread(threads)]
    consumer, seams = rig.consumer(queue_name, poll_timeout=30, faults={"start": faults})
    wait_for(lambda: blocked_in_pop(redis_client, consumer._client_id))
    push_work(redis_client, keys, ["handed-on"])
    wait_for(lambda: all_succeeded(redis_client, keys, ["handed-on"]))
    rig.wait_settled()
    assert threads[0] == consumer.name
    assert len(threads) == 2
    assert threads[1] != consumer.name
    first, again = [call for call in seams.seen if call.script == "start"]
    assert again == first  # the same token: a start that ran is not counted twice
    assert tracker.attempts == {"handed-on": [1]}
    assert attempts_of(redis_client, keys, ["handed-on"]) == {1}
    assert_queue_empty(redis_client, rig, queue_name)


def test_a_counted_job_the_loop_could_not_run_goes_back_and_runs_again(
    rig: Rig,
    redis_client: redis.Redis,
    queue_name: str,
    tracker: Tracker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = rig.keys[queue_name]
    launch = rig.runner.launch
    failed_once = threading.Event()

    def launch_failing_once(*args: Any) -> None:
        if not failed_once.is_set():
            failed_once.set()  # a bug between the counted start and the job's task
            raise RuntimeError("could not launch")
        launch(*args)

    monkeypatch.setattr(rig.runner, "launch", launch_failing_once)
    with capture_logs() as logs:
        consumer, _ = rig.consumer(queue_name, poll_timeout=1)
        wait_for(lambda: blocked_in_pop(redis_client, consumer._client_id))
        push_work(redis_client, keys, ["relaunched"])
        wait_for(lambda: all_succeeded(redis_client, keys, ["relaunched"]))
        rig.wait_settled()
    assert events(logs, "consumer.launch_failed")
    assert events(logs, "consumer.job_returned")
    assert tracker.attempts == {"relaunched": [2]}  # the counted start that never ran stays
    assert_queue_empty(redis_client, rig, queue_name)


def move_to_another_worker(client: redis.Redis, keys: QueueKeys, job_id: str) -> Fault:
    """A fault for the start call: first, job `job_id` is recovered from our processing list
    and taken by another worker (its reply to our take was still on its way)."""

    def recovered_elsewhere(real: Callable[[], Any], call: ScriptCall | None) -> Any:
        assert call is not None
        processing = call.keys[0]
        for raw in client.lrange(processing, 0, -1):
            if f'"{job_id}"'.encode() in raw:
                client.lrem(processing, 1, raw)
                client.lpush(keys.processing("other-worker"), raw)
        return real()

    return recovered_elsewhere


def test_a_job_recovered_elsewhere_between_take_and_start_is_not_run_here(
    rig: Rig, redis_client: redis.Redis, queue_name: str, tracker: Tracker
) -> None:
    keys = rig.keys[queue_name]
    push_work(redis_client, keys, ["taken-away", "kept"])
    fault = move_to_another_worker(redis_client, keys, "taken-away")
    with capture_logs() as logs:
        rig.consumer(queue_name, faults={"start": [fault]})
        wait_for(lambda: all_succeeded(redis_client, keys, ["kept"]))
        rig.wait_settled()

    assert [line["job_id"] for line in events(logs, "job.not_held")] == ["taken-away"]
    assert "taken-away" not in tracker.attempts
    assert record(redis_client, keys, "taken-away") == {}  # start.lua counted nothing
    assert redis_client.llen(keys.processing("other-worker")) == 1
    assert rig.slots.in_use == 0


def test_a_start_counted_for_a_job_recovered_before_the_start_was_sent_again_is_taken_back(
    rig: Rig, redis_client: redis.Redis, queue_name: str, tracker: Tracker
) -> None:
    """The start ran and counted the job; its reply was lost; the job was recovered before
    the call was sent again: the second sending takes the count back and reports 0."""
    keys = rig.keys[queue_name]
    push_work(redis_client, keys, ["counted-then-gone"])
    move = move_to_another_worker(redis_client, keys, "counted-then-gone")

    def counted_then_recovered(real: Callable[[], Any], call: ScriptCall | None) -> Any:
        assert real() == [1, 0, 0]  # attempt 1, nothing forgiven, not over a limit
        move(lambda: None, call)
        raise redis.ConnectionError("Connection reset by peer (injected: the reply was lost)")

    with capture_logs() as logs:
        rig.consumer(queue_name, faults={"start": [counted_then_recovered]})
        wait_for(lambda: events(logs, "job.not_held"))
        rig.wait_settled()
    found = record(redis_client, keys, "counted-then-gone")
    assert (found["attempts"], found["status"]) == (0, "queued")
    assert tracker.runs() == 0


def stop_meanwhile(rig: Rig, entered: threading.Event | None = None) -> Fault:
    """A fault for a take or a pop: the stop is requested while its reply is on its way."""

    def fault(real: Callable[[], Any], call: ScriptCall | None) -> Any:
        if entered is not None:
            entered.set()
        taken = real()
        assert taken, "nothing was taken"
        rig.stop.set()
        return taken

    return fault


def test_jobs_taken_while_a_stop_was_requested_go_back_to_the_front_uncounted(
    make_rig: Callable[..., Rig], redis_client: redis.Redis, queue_name: str, tracker: Tracker
) -> None:
    rig = make_rig([queue_name], capacity=2)
    keys = rig.keys[queue_name]
    job_ids = ids("order", 5)
    push_work(redis_client, keys, job_ids)
    (consumer, _) = rig.consumer(queue_name, faults={"take": [stop_meanwhile(rig)]})
    consumer.join(10)
    assert not consumer.is_alive()

    waiting = ready_ids(redis_client, keys)
    # The two taken (one per free slot) are back at the consuming end, ahead of the others.
    assert sorted(waiting[:2]) == job_ids[:2]
    assert waiting[2:] == job_ids[2:]
    assert redis_client.llen(rig.processing(queue_name)) == 0
    assert all(record(redis_client, keys, job_id) == {} for job_id in job_ids)  # uncounted
    assert tracker.runs() == 0
    assert rig.slots.in_use == 0


def test_jobs_given_back_at_a_stop_keep_their_order(
    make_rig: Callable[..., Rig], redis_client: redis.Redis, queue_name: str, tracker: Tracker
) -> None:
    """As everywhere else jobs go back (recovery, jobs returned after a lost take reply),
    the oldest of those given back is first in line again."""
    rig = make_rig([queue_name], capacity=3)
    keys = rig.keys[queue_name]
    job_ids = ids("kept-order", 3)
    push_work(redis_client, keys, job_ids)
    (consumer, _) = rig.consumer(queue_name, faults={"take": [stop_meanwhile(rig)]})
    consumer.join(10)
    assert not consumer.is_alive()
    assert ready_ids(redis_client, keys) == job_ids


def test_a_job_popped_while_a_stop_was_requested_goes_back_uncounted(
    rig: Rig, redis_client: redis.Redis, queue_name: str, tracker: Tracker
) -> None:
    keys = rig.keys[queue_name]
    in_pop = threading.Event()
    consumer, _ = rig.consumer(
        queue_name, faults={"pop": [stop_meanwhile(rig, in_pop)]}, poll_timeout=10
    )
    assert in_pop.wait(10)
    push_work(redis_client, keys, ["popped-at-stop", "waiting"])
    consumer.join(10)
    assert not consumer.is_alive()

    assert ready_ids(redis_client, keys) == ["popped-at-stop", "waiting"]
    assert redis_client.llen(rig.processing(queue_name)) == 0
    assert record(redis_client, keys, "popped-at-stop") == {}
    assert tracker.runs() == 0
    assert rig.slots.in_use == 0


# -- heartbeat, burst, wake -----------------------------------------------------------------


class CountingLiveness(Liveness):
    """Liveness that also signals once the consumer has asked `fresh()` a few times."""

    def __init__(self, life: float, interval: float, asked: int = 3) -> None:
        super().__init__(life, interval)
        self.asked = 0
        self.asked_enough = threading.Event()
        self._enough = asked

    def fresh(self) -> bool:
        self.asked += 1
        if self.asked >= self._enough:
            self.asked_enough.set()
        return super().fresh()


def test_nothing_is_taken_while_the_heartbeat_is_not_fresh(
    rig: Rig, redis_client: redis.Redis, queue_name: str, tracker: Tracker
) -> None:
    keys = rig.keys[queue_name]
    rig.liveness = liveness = CountingLiveness(life=0.5, interval=1.0)  # the keys may lapse
    push_work(redis_client, keys, ["waits"])
    _, seams = rig.consumer(queue_name)
    assert liveness.asked_enough.wait(10)
    assert redis_client.llen(keys.ready) == 1
    assert seams.calls == {}  # not even a take
    assert rig.slots.in_use == 0
    liveness.life = 60.0
    wait_for(lambda: all_succeeded(redis_client, keys, ["waits"]))


def test_a_job_popped_once_the_liveness_keys_may_have_lapsed_goes_back_unstarted(
    rig: Rig, redis_client: redis.Redis, queue_name: str, tracker: Tracker
) -> None:
    """A pop may outlast the liveness keys (the worker may be found lost meanwhile): the job
    it brings then goes back to the queue, unstarted, rather than run where it could also be
    run by a worker that recovered it."""
    keys = rig.keys[queue_name]
    in_pop = threading.Event()

    def lapsing_meanwhile(real: Callable[[], Any], call: ScriptCall | None) -> Any:
        in_pop.set()
        raw = real()
        rig.liveness.life = 0.0  # the beats stalled while the pop waited
        return raw

    with capture_logs() as logs:
        rig.consumer(queue_name, poll_timeout=30, faults={"pop": [lapsing_meanwhile]})
        assert in_pop.wait(10)
        push_work(redis_client, keys, ["brought-late"])
        wait_for(lambda: events(logs, "consumer.pop_while_lapsing"))
        wait_for(lambda: redis_client.llen(keys.ready) == 1)  # back, unstarted
        assert tracker.runs() == 0
        rig.liveness.life = 60.0
        wait_for(lambda: all_succeeded(redis_client, keys, ["brought-late"]), timeout=15)
    assert tracker.attempts["brought-late"] == [1]
    rig.stop_consumers()


def test_a_delayed_job_starts_at_its_due_time_not_after_the_poll_timeout(
    rig: Rig, redis_client: redis.Redis, queue_name: str, tracker: Tracker
) -> None:
    keys = rig.keys[queue_name]
    job_id = Producer(client=redis_client, queue=queue_name).push("inproc.work", _delay=0.3)
    started = time.monotonic()
    rig.consumer(queue_name, poll_timeout=30)
    wait_for(lambda: all_succeeded(redis_client, keys, [job_id]), timeout=10)
    assert time.monotonic() - started < 5


def test_burst_mode_returns_once_the_queue_is_empty(
    rig: Rig, redis_client: redis.Redis, queue_name: str, tracker: Tracker
) -> None:
    keys = rig.keys[queue_name]
    job_ids = ids("burst", 20)
    push_work(redis_client, keys, job_ids, 0.01)
    started = time.monotonic()
    consumer, _ = rig.consumer(queue_name, burst=True, poll_timeout=30)
    consumer.join(10)
    assert not consumer.is_alive()
    assert time.monotonic() - started < 5  # its pops end within half a second, not 30 s
    assert not rig.stop.is_set()  # it ended by itself
    rig.wait_settled()
    assert all_succeeded(redis_client, keys, job_ids)


@pytest.mark.parametrize("ending", ["stop", "burst"])
def test_a_consumer_closes_its_connection_when_it_ends(
    rig: Rig, redis_client: redis.Redis, queue_name: str, tracker: Tracker, ending: str
) -> None:
    consumer, _ = rig.consumer(queue_name, burst=ending == "burst", poll_timeout=0.3)
    wait_for(lambda: consumer._client_id is not None)
    client_id = consumer._client_id
    if ending == "stop":
        rig.stop_consumers()
    consumer.join(10)
    assert not consumer.is_alive()

    def connected() -> bool:
        return any(int(info["id"]) == client_id for info in redis_client.client_list())

    wait_for(lambda: not connected(), timeout=3)


def test_wake_cuts_a_blocking_pop_short(
    rig: Rig, redis_client: redis.Redis, queue_name: str, tracker: Tracker
) -> None:
    consumer, seams = rig.consumer(queue_name, poll_timeout=30)
    wait_for(lambda: blocked_in_pop(redis_client, consumer._client_id))
    rig.stop.set()
    started = time.monotonic()
    consumer.wake(rig.redis_url)
    consumer.join(5)
    assert not consumer.is_alive()
    assert time.monotonic() - started < 3  # not the 30 s of its pop
    assert seams.calls["pop"] == 1
    assert rig.slots.in_use == 0


def test_wake_ends_a_pop_sent_just_after_the_stop_was_requested(
    rig: Rig, redis_client: redis.Redis, queue_name: str, tracker: Tracker
) -> None:
    consumers: list[ConsumerThread] = []
    waker: list[threading.Thread] = []

    def stop_and_wake_then_pop(real: Callable[[], Any], call: ScriptCall | None) -> Any:
        # The stop comes after the consumer's last look at it: the first CLIENT UNBLOCK
        # finds no blocked pop.
        rig.stop.set()
        waker.append(threading.Thread(target=consumers[0].wake, args=(rig.redis_url,)))
        waker[0].start()
        time.sleep(0.2)
        return real()

    consumer, _ = rig.consumer(
        queue_name, poll_timeout=30, faults={"pop": [stop_and_wake_then_pop]}, start=False
    )
    consumers.append(consumer)
    started = time.monotonic()
    consumer.start()
    consumer.join(10)
    assert not consumer.is_alive()
    assert time.monotonic() - started < 5  # not the 30 s of its pop
    waker[0].join(5)
    assert rig.slots.in_use == 0


def test_wake_before_any_pop_does_nothing(rig: Rig, queue_name: str) -> None:
    consumer, _ = rig.consumer(queue_name, start=False)
    consumer.wake(rig.redis_url)  # no connection to unblock yet
    assert consumer._client_id is None
