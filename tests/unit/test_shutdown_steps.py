"""The worker's shutdown, one step at a time, in-process and without signals: a real `Worker`
on the Redis of the session and the test's queue, started, then `request_shutdown`,
`stop_consumers`, `wait_for_running`, `cancel_running` and `close` called in turn, each
checked against what Redis shows."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from structlog.testing import capture_logs

from producer.history import read_history
from producer.keys import QueueKeys, workers_key
from tests.conftest import wait_for
from tests.unit.inprocess import (
    TRACKER,
    Tracker,
    events,
    job,
    make_settings,
    push,
    ready_ids,
    record,
    registry,
    returns_within,
)
from worker.process.daemon import ShutdownSummary, Worker

pytestmark = pytest.mark.real_redis

REGISTRY = registry()


@pytest.fixture
def tracker() -> Tracker:
    TRACKER.reset()
    return TRACKER


# Worker.close() and Worker.shutdown() run under a time limit (tests.unit.inprocess): both end
# with the event loop's close, which has been seen to block for ever inside uvloop. Their own
# waits are bounded (10 s for the closing steps on the loop, 10 s for the loop thread to end),
# so a close that takes longer than this is stuck.
CLOSE_LIMIT = 30.0


def close(worker: Worker) -> None:
    returns_within(CLOSE_LIMIT, worker.close, "Worker.close()")


def shutdown(worker: Worker) -> ShutdownSummary:
    return returns_within(CLOSE_LIMIT, worker.shutdown, "Worker.shutdown()")


def close_quietly(worker: Worker) -> None:
    """Whatever step a test stopped at, take the worker the rest of the way down."""
    if not worker.loop_thread.is_alive:
        return
    worker.request_shutdown("test teardown", immediate=True)
    worker.stop_consumers()
    worker.cancel_running()
    close(worker)


@pytest.fixture
def make_worker(
    redis_url: str, queue_name: str, tracker: Tracker
) -> Iterator[Callable[..., Worker]]:
    made: list[Worker] = []

    def make(*, burst: bool = False, start: bool = True, **settings: Any) -> Worker:
        worker = Worker(make_settings(redis_url, [queue_name], **settings), REGISTRY, burst=burst)
        made.append(worker)
        if start:
            worker.start()
        return worker

    yield make
    for worker in made:
        close_quietly(worker)


def started(job_id: str) -> Callable[[], bool]:
    return lambda: TRACKER.started(job_id)


def test_request_shutdown_stops_taking_jobs(
    make_worker: Callable[..., Worker], redis_client: redis.Redis, keys: QueueKeys
) -> None:
    """The slot the running job frees during the drain is not used to take the next one."""
    worker = make_worker(concurrency=1)
    push(redis_client, keys, job("inproc.gated", "first"), job("inproc.work", "second"))
    wait_for(started("first"))
    worker.request_shutdown("test")
    TRACKER.gate.set()
    assert worker.wait_for_running(time.monotonic() + 10)
    # The consumer, waiting for that slot, sees the stop and ends by itself.
    wait_for(lambda: worker._is_live() == (True, "draining"))
    worker.stop_consumers()

    assert record(redis_client, keys, "first")["status"] == "succeeded"
    assert ready_ids(redis_client, keys) == ["second"]
    assert record(redis_client, keys, "second") == {}
    assert not TRACKER.started("second")


def test_wait_for_running_lets_a_short_job_finish(
    make_worker: Callable[..., Worker], redis_client: redis.Redis, keys: QueueKeys
) -> None:
    worker = make_worker()
    push(redis_client, keys, job("inproc.gated", "short"))
    wait_for(started("short"))
    worker.request_shutdown("test")
    worker.stop_consumers()
    assert not worker.wait_for_running(time.monotonic() + 0.1)  # it is still running
    assert len(worker.running) == 1
    TRACKER.gate.set()  # the job ends during the wait
    assert worker.wait_for_running(time.monotonic() + 10)
    assert len(worker.running) == 0
    assert record(redis_client, keys, "short")["status"] == "succeeded"
    assert worker.cancel_running() == 0


def test_cancel_running_puts_a_long_job_back_at_the_front_with_its_attempt_taken_back(
    make_worker: Callable[..., Worker], redis_client: redis.Redis, keys: QueueKeys
) -> None:
    worker = make_worker(concurrency=1)
    push(redis_client, keys, job("inproc.hang", "long"), job("inproc.work", "waiting"))
    wait_for(started("long"))
    assert record(redis_client, keys, "long")["attempts"] == 1
    worker.request_shutdown("test")
    worker.stop_consumers()
    assert not worker.wait_for_running(time.monotonic() + 0.2)
    with capture_logs() as logs:
        assert worker.cancel_running() == 1
    assert len(worker.running) == 0
    assert worker.slots.in_use == 0

    assert ready_ids(redis_client, keys) == ["long", "waiting"]  # at the consuming end
    found = record(redis_client, keys, "long")
    assert (found["status"], found["attempts"]) == ("queued", 0)
    assert redis_client.llen(keys.processing(worker.settings.worker_id)) == 0
    assert TRACKER.finished["long"] == 1  # its cleanup ran
    assert events(logs, "job.requeued")[0]["held"] is True


def test_close_clears_the_heartbeat_when_nothing_is_held(
    make_worker: Callable[..., Worker], redis_client: redis.Redis, keys: QueueKeys
) -> None:
    worker = make_worker()
    worker_id = worker.settings.worker_id
    wait_for(lambda: redis_client.exists(keys.worker(worker_id)))
    wait_for(lambda: redis_client.sismember(workers_key(), worker_id))
    worker.request_shutdown("test")
    worker.stop_consumers()
    assert worker.wait_for_running(time.monotonic() + 1)
    close(worker)

    assert not redis_client.exists(keys.worker(worker_id))
    assert not redis_client.sismember(workers_key(), worker_id)
    assert not worker.loop_thread.is_alive
    assert not worker.heartbeat.is_alive()


def test_close_writes_the_history_of_the_jobs_ended_since_the_last_beat(
    make_worker: Callable[..., Worker], redis_client: redis.Redis, keys: QueueKeys
) -> None:
    worker = make_worker(heartbeat_interval=30.0, heartbeat_ttl=65.0)  # one beat, at start
    push(redis_client, keys, job("inproc.work", "fine"), job("inproc.fail_for_good", "not"))
    wait_for(lambda: record(redis_client, keys, "not").get("status") == "dead")
    wait_for(lambda: record(redis_client, keys, "fine").get("status") == "succeeded")
    assert not redis_client.exists(keys.history)  # the next beat is 30 s away
    worker.request_shutdown("test")
    worker.stop_consumers()
    close(worker)

    [history] = read_history(redis_client, [keys], now=time.time(), minutes=2).values()
    assert (sum(m.ok for m in history), sum(m.failed for m in history)) == (1, 1)


def test_close_keeps_the_heartbeat_while_a_job_is_still_held(
    make_worker: Callable[..., Worker], redis_client: redis.Redis, keys: QueueKeys
) -> None:
    """A job an outage kept from going back stays in the processing list: the liveness keys
    are left to lapse, so that another worker recovers it."""
    worker = make_worker()
    worker_id = worker.settings.worker_id
    processing = keys.processing(worker_id)
    wait_for(lambda: redis_client.exists(keys.worker(worker_id)))
    worker.request_shutdown("test")
    worker.stop_consumers()
    redis_client.lpush(processing, job("inproc.work", "still-held"))
    try:
        close(worker)
        assert redis_client.exists(keys.worker(worker_id))
        assert redis_client.sismember(workers_key(), worker_id)
    finally:
        redis_client.delete(processing, keys.worker(worker_id))
        redis_client.srem(workers_key(), worker_id)


@pytest.mark.parametrize("how", ["second-request", "immediate"])
def test_a_hurried_shutdown_cuts_the_wait_for_running_jobs_short(
    make_worker: Callable[..., Worker], redis_client: redis.Redis, keys: QueueKeys, how: str
) -> None:
    worker = make_worker()
    push(redis_client, keys, job("inproc.hang", "long"))
    wait_for(started("long"))
    with capture_logs() as logs:
        if how == "second-request":
            worker.request_shutdown("first")
            worker.request_shutdown("second")
        else:
            worker.request_shutdown("now", immediate=True)
    assert len(events(logs, "worker.shutdown_hurried")) == 1
    assert len(events(logs, "worker.draining")) == 1
    worker.stop_consumers()
    began = time.monotonic()
    assert not worker.wait_for_running(began + 30)
    assert time.monotonic() - began < 1  # not the 30 s it was given
    assert worker.cancel_running() == 1
    assert ready_ids(redis_client, keys) == ["long"]


def test_shutdown_runs_every_step_and_reports_what_it_cancelled(
    make_worker: Callable[..., Worker], redis_client: redis.Redis, keys: QueueKeys
) -> None:
    worker = make_worker(shutdown_grace=0.3)
    push(redis_client, keys, job("inproc.hang", "long"), job("inproc.work", "short"))
    wait_for(lambda: TRACKER.started("long") and TRACKER.finished["short"])
    worker.request_shutdown("SIGTERM")
    summary = shutdown(worker)
    assert (summary.reason, summary.finished_in_grace, summary.cancelled) == ("SIGTERM", False, 1)
    assert 0.3 <= summary.duration_s < 10
    assert ready_ids(redis_client, keys) == ["long"]
    assert record(redis_client, keys, "short")["status"] == "succeeded"
    assert not redis_client.exists(keys.worker(worker.settings.worker_id))


def test_burst_mode_returns_a_summary_once_drained(
    make_worker: Callable[..., Worker], redis_client: redis.Redis, keys: QueueKeys
) -> None:
    job_ids = [f"burst-{i}" for i in range(10)]
    push(redis_client, keys, *(job("inproc.work", job_id, 0.01) for job_id in job_ids))
    worker = make_worker(burst=True)
    summaries: list[ShutdownSummary] = []

    def serve() -> None:
        worker.wait_for_shutdown_request()
        summaries.append(shutdown(worker))

    serving = threading.Thread(target=serve, name="test-burst", daemon=True)
    serving.start()
    serving.join(15)
    assert not serving.is_alive(), "burst mode did not end with the queue drained"
    [summary] = summaries
    assert (summary.reason, summary.finished_in_grace, summary.cancelled) == ("drained", True, 0)
    assert all(record(redis_client, keys, job_id)["status"] == "succeeded" for job_id in job_ids)
    assert redis_client.llen(keys.ready) == 0
    assert redis_client.llen(keys.processing(worker.settings.worker_id)) == 0
