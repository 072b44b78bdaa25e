"""Retries, recovery of a lost worker's jobs, and fencing, with real worker processes.

The fault-injection suite (tests/faults/) runs the same mechanisms at volume; these tests pin
down each rule on its own, with timings small enough to run in seconds.
"""

from __future__ import annotations

import signal
import time

import orjson
import redis

from producer import Producer
from producer.keys import QueueKeys
from tests.conftest import wait_for
from tests.integration.helpers import (
    dead_entries,
    job_events,
    processing_total,
    record,
    wait_for_outcome,
    worker_id,
)

# Recovery within about a second of a worker's death.
FAST_RECOVERY = {
    "COROQ_HEARTBEAT_INTERVAL": "0.2",
    "COROQ_HEARTBEAT_TTL": "1.0",
    "COROQ_REAPER_INTERVAL": "0.2",
    "COROQ_PROMOTE_INTERVAL": "0.1",
}


def test_failed_attempts_are_retried_until_one_succeeds(
    start_worker, producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    worker = start_worker(env=FAST_RECOVERY)
    job_id = producer.push("tests.flaky", 3, _max_attempts=5)
    found = wait_for_outcome(redis_client, keys, job_id)
    assert (found["status"], found["result"], found["attempts"]) == ("succeeded", 3, 3)
    assert not {"reason", "error", "traceback"} & found.keys()  # the failures' fields go
    assert len(worker.events("job.retrying")) == 2
    assert all(0 <= line["delay_s"] <= 0.2 for line in worker.events("job.retrying"))
    assert redis_client.zcard(keys.delayed) == 0


def test_a_job_that_keeps_failing_is_dead_after_max_attempts_with_its_traceback(
    start_worker, producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    start_worker(env=FAST_RECOVERY)
    job_id = producer.push("tests.flaky", 99, _max_attempts=3)
    found = wait_for_outcome(redis_client, keys, job_id)
    assert (found["status"], found["reason"], found["attempts"]) == ("dead", "handler_error", 3)
    [entry] = dead_entries(redis_client, keys)
    assert entry["id"] == job_id
    assert entry["attempts"] == 3
    assert "attempt 3 fails on purpose" in entry["error"]
    assert "RuntimeError" in entry["traceback"]
    assert orjson.loads(entry["raw"])["id"] == job_id


def test_retry_after_waits_in_the_delayed_set_for_the_delay_asked(
    start_worker, producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    worker = start_worker(env=FAST_RECOVERY)
    job_id = producer.push("tests.retry_after", 1.5)
    wait_for(lambda: record(redis_client, keys, job_id).get("status") == "retrying")
    assert redis_client.zcard(keys.delayed) == 1
    found = wait_for_outcome(redis_client, keys, job_id)
    assert (found["status"], found["attempts"]) == ("succeeded", 2)
    [retrying] = worker.events("job.retrying")
    assert retrying["delay_s"] == 1.5
    # The second attempt started no earlier than the delay asked for.
    assert found["started_at"] - found["enqueued_at"] >= 1.5


def test_fail_skips_the_remaining_attempts(
    start_worker, producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    start_worker(env=FAST_RECOVERY)
    job_id = producer.push("tests.fail_for_good", _max_attempts=5)
    found = wait_for_outcome(redis_client, keys, job_id)
    assert (found["status"], found["attempts"]) == ("dead", 1)
    assert "can never work" in found["error"]


def test_a_sync_task_sees_its_job(
    start_worker, producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    start_worker()
    job_id = producer.push("tests.sync_job_info")
    found = wait_for_outcome(redis_client, keys, job_id)
    assert found["result"] == {
        "id": job_id,
        "attempt": 1,
        "task": "tests.sync_job_info",
        "queue": keys.queue,
    }


def test_jobs_of_a_sigkilled_worker_run_again_on_another(
    start_worker, producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    """They were running when their worker died, so they are suspects: each may have been the
    cause. They run again in smaller groups with nothing beside them, and the lost attempt is
    forgiven (docs/reliability.md#blame)."""
    doomed = start_worker(env=FAST_RECOVERY)
    job_ids = [producer.push("tests.nap", 2, f"job-{n}") for n in range(3)]
    wait_for(lambda: len(doomed.events("nap.begin")) == 3)
    doomed.process.kill()
    doomed.wait()
    assert processing_total(redis_client, keys) == 3  # held by a dead worker

    rescuer = start_worker(env={**FAST_RECOVERY, "COROQ_SHUTDOWN_GRACE": "0"})
    for job_id in job_ids:
        found = wait_for_outcome(redis_client, keys, job_id, timeout=30)
        assert (found["status"], found["worker"]) == ("succeeded", worker_id(rescuer))
        assert (found["attempts"], found["forgiven"]) == (2, 1)
    [recovered] = rescuer.events("jobs.recovered")
    assert (recovered["owner"], recovered["count"]) == (worker_id(doomed), 3)
    assert (recovered["suspects"], recovered["blamed"]) == (3, 0)
    # Halves of the group lost together: two, then one, each with nothing beside it.
    assert [line["group"] for line in rescuer.events("job.trial")] == [2, 1]


def test_with_the_defaults_a_sigkilled_workers_jobs_run_again_within_ten_seconds(
    start_worker, producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    """The default heartbeat and reaper settings (docs/reliability.md#recovery-time): 9.5 s
    at most from the last beat to the recovery; the bound here leaves room for a loaded
    machine, bench/recovery.py measures the figures."""
    doomed = start_worker()
    rescuer = start_worker()
    job_id = producer.push("tests.nap", 60, "long")
    wait_for(lambda: record(redis_client, keys, job_id).get("worker") is not None)
    if record(redis_client, keys, job_id)["worker"] == worker_id(rescuer):
        doomed, rescuer = rescuer, doomed  # kill the one running it
    killed_at = time.time()
    doomed.process.kill()
    doomed.wait()
    wait_for(lambda: record(redis_client, keys, job_id).get("attempts") == 2, timeout=20)
    again = record(redis_client, keys, job_id)
    assert again["worker"] == worker_id(rescuer)
    assert float(again["started_at"]) - killed_at < 12.0


def test_a_long_job_on_a_live_worker_is_never_taken_from_it(
    start_worker, producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    """Recovery depends on the owner's heartbeat, not on how long the job has run."""
    owner = start_worker(env=FAST_RECOVERY)
    other = start_worker(env=FAST_RECOVERY)
    job_id = producer.push("tests.sync_nap", 4.0)  # 4 heartbeat TTLs
    found = wait_for_outcome(redis_client, keys, job_id)
    assert (found["status"], found["attempts"]) == ("succeeded", 1)
    assert not owner.events("jobs.recovered")
    assert not other.events("jobs.recovered")


def test_a_paused_worker_whose_jobs_were_recovered_cannot_ack_them(
    start_worker, producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    """Fencing: SIGSTOP past the heartbeat TTL, recovery elsewhere, then SIGCONT."""
    paused = start_worker(env=FAST_RECOVERY)
    job_id = producer.push("tests.nap", 1.0, "fenced")
    wait_for(lambda: paused.events("nap.begin"))
    paused.signal(signal.SIGSTOP)
    try:
        rescuer = start_worker(env=FAST_RECOVERY)
        found = wait_for_outcome(redis_client, keys, job_id)
        assert (found["status"], found["worker"]) == ("succeeded", worker_id(rescuer))
    finally:
        paused.signal(signal.SIGCONT)
    # Logged once its ack script has answered "not held": that write is already over.
    wait_for(lambda: paused.events("job.ack_lost"))
    assert job_events(paused, "job.succeeded") == []
    after = record(redis_client, keys, job_id)
    assert (after["status"], after["worker"]) == ("succeeded", worker_id(rescuer))
    # Its heartbeat thread wakes with the loop on SIGCONT: either may write first.
    wait_for(lambda: paused.events("worker.heartbeat_lapsed"))


def test_a_job_that_kills_its_worker_every_time_ends_in_the_dead_list(
    start_worker, producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    """Killed on an ordinary run first (forgiven: any job beside it could have been the cause),
    then twice while it ran alone as a suspect (held against it): its 2 attempts are used."""
    job_id = producer.push("tests.nap", 30, "poison", _max_attempts=2)
    for _ in range(3):
        victim = start_worker(env=FAST_RECOVERY)
        wait_for(lambda victim=victim: victim.events("nap.begin"))
        victim.process.kill()
        victim.wait()
    survivor = start_worker(env=FAST_RECOVERY)
    found = wait_for_outcome(redis_client, keys, job_id)
    assert (found["status"], found["reason"], found["attempts"]) == ("dead", "worker_lost", 3)
    assert (found["forgiven"], found["group"]) == (1, 1)
    assert not survivor.events("nap.begin")
    [entry] = dead_entries(redis_client, keys)
    assert entry["reason"] == "worker_lost"


def test_sigterm_leaves_delayed_retries_in_place_and_exits_zero(
    start_worker, producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    worker = start_worker(env=FAST_RECOVERY)
    job_id = producer.push("tests.retry_after", 60)
    wait_for(lambda: record(redis_client, keys, job_id).get("status") == "retrying")
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert redis_client.zcard(keys.delayed) == 1
    assert processing_total(redis_client, keys) == 0
    assert not redis_client.exists(keys.worker(worker_id(worker)))


def test_pops_that_time_out_while_a_job_runs_count_its_attempt_once(
    start_worker, producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    """An idle worker counts a popped job's start in the pop's own round trip; the pops that
    time out while that job runs find it at the head of the processing list, already
    started, and must not count it again (nor its retry, popped by the same worker)."""
    worker = start_worker(env={"COROQ_POLL_TIMEOUT": "0.1"})
    job_id = producer.push("tests.nap", 1.5)
    found = wait_for_outcome(redis_client, keys, job_id)
    assert found["status"] == "succeeded"
    assert found["attempts"] == 1
    assert job_events(worker, "job.started") == [job_id]

    retried = producer.push("tests.flaky", 2, _max_attempts=3)  # fails once, then succeeds
    found = wait_for_outcome(redis_client, keys, retried)
    assert (found["status"], found["attempts"], found["result"]) == ("succeeded", 2, 2)
    assert processing_total(redis_client, keys) == 0


def test_jobs_of_a_worker_missing_from_the_set_of_workers_are_found_by_scan(
    start_worker, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    """A processing list whose owner never made it into `coroq:workers` (or was removed from
    it) is found by the reaper's SCAN, which runs as the worker starts."""
    raw = orjson.dumps({"task": "tests.add", "id": "orphan-1", "args": [1, 2]})
    redis_client.lpush(keys.processing("unlisted-worker"), raw)
    start_worker()
    found = wait_for_outcome(redis_client, keys, "orphan-1")
    assert (found["status"], found["result"]) == ("succeeded", 3)
    assert not redis_client.exists(keys.processing("unlisted-worker"))
