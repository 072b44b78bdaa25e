"""Connection faults between a worker and Redis: every connection reset, or nothing getting
through for a while, again and again during a run. No job is lost and the worker carries on
after each fault; a worker cut off for longer than its heartbeat TTL loses its jobs to a live
worker, and its late acknowledgements for them are refused."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from tests.conftest import wait_for
from tests.faults.ledger import Ledger
from tests.faults.processes import FAST_TIMINGS, WorkerLauncher
from tests.faults.proxy import FaultyProxy
from tests.faults.scale import scaled, timeout_for
from worker.local_redis import RedisServerProcess

HEARTBEAT_TTL = float(FAST_TIMINGS["COROQ_HEARTBEAT_TTL"])


@pytest.fixture
def proxy(redis_server: RedisServerProcess) -> Iterator[FaultyProxy]:
    with FaultyProxy(redis_server.port) as started:
        yield started


def ids_in(ledger: Ledger, key: str) -> list[str]:
    return [orjson.loads(raw)["id"] for raw in ledger.queue_client.lrange(key, 0, -1)]


def push_jobs(ledger: Ledger, count: int, rng: random.Random) -> None:
    ledger.push(
        [
            ledger.envelope(f"c{i:06d}", "faults.work", seconds=round(rng.uniform(0, 0.02), 4))
            for i in range(count)
        ]
    )


@pytest.mark.timeout(timeout_for(150))
def test_worker_survives_repeated_cuts_and_stalls_without_losing_a_job(
    ledger: Ledger,
    proxy: FaultyProxy,
    make_launcher: Callable[..., WorkerLauncher],
    record_property: Callable[[str, Any], None],
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    jobs, faults = scaled(2000), scaled(8)
    push_jobs(ledger, jobs, rng)
    launcher = make_launcher(redis_url=proxy.url, env={"COROQ_CONCURRENCY": "10"}, name="proxied")
    worker = launcher.start()
    step = jobs // (faults + 2)
    stalled_s: list[float] = []
    resumed_within_s: list[float] = []
    for number in range(faults):
        # Fault only once the worker has shown it serves again since the last fault.
        target = min(jobs, ledger.done_count() + step)
        ended = time.monotonic()
        if not ledger.wait_done(target, timeout=60):
            raise AssertionError(
                f"no progress after fault {number} (done {ledger.done_count()}, wanted "
                f"{target}): {ledger.where_unfinished()}\n{worker.log_text(60)}"
            )
        if number:
            resumed_within_s.append(round(time.monotonic() - ended, 2))
        if number % 2 == 0:
            proxy.cut()
        else:
            proxy.stall()
            pause = rng.uniform(0.3, 2.5)  # shorter and longer than the heartbeat TTL
            time.sleep(pause)
            proxy.resume()
            stalled_s.append(round(pause, 2))

    everything_final = ledger.wait_all_final(timeout=timeout_for(60))
    still_serving = worker.alive()
    worker.terminate()
    exit_code = worker.wait(timeout=30)
    # One worker, no kills: each counted attempt should be one start the worker logged.
    logged_starts = Counter(line["job_id"] for line in worker.events("job.started"))
    miscounted = [
        {"id": job_id, "attempts": record.get("attempts"), "started_logged": logged_starts[job_id]}
        for job_id, record in ledger.records().items()
        if record.get("attempts") != logged_starts[job_id]
    ]
    figures = ledger.figures(
        "connection_faults",
        seed=seed,
        faults=faults,
        cuts=(faults + 1) // 2,
        connections_cut=proxy.connections_cut,
        stalls_s=stalled_s,
        progress_resumed_within_s=resumed_within_s,
        redis_unavailable_logged=len(worker.events("redis.unavailable")),
        redis_recovered_logged=len(worker.events("redis.recovered")),
        ack_lost=len(worker.events("job.ack_lost")),
        attempts_not_matching_starts=len(miscounted),
        miscounted_sample=miscounted[:3],
    )
    figures.publish(record_property)

    assert everything_final, (figures.as_dict(), ledger.where_unfinished())
    assert figures.lost == 0, figures.as_dict()
    assert figures.succeeded == jobs, figures.as_dict()
    assert still_serving, worker.log_text()
    assert len(launcher.started) == 1  # one process served the whole run
    assert worker.events("redis.unavailable"), "the outages were not logged"
    assert worker.events("redis.recovered")
    assert exit_code == 0
    assert ledger.leftovers() == {"ready": 0, "delayed": 0, "processing": 0}
    # A start whose reply was lost to a cut and was sent again must not count twice.
    assert miscounted == [], miscounted


@pytest.mark.timeout(timeout_for(120))
def test_worker_cut_off_past_its_heartbeat_ttl_loses_its_jobs_to_a_live_worker(
    ledger: Ledger,
    proxy: FaultyProxy,
    make_launcher: Callable[..., WorkerLauncher],
    record_property: Callable[[str, Any], None],
) -> None:
    """DESIGN §3: a Redis connection cut, and every job the worker held runs again; a worker
    whose jobs were recovered can no longer ack them as its own."""
    ids = ledger.push(
        [ledger.envelope(f"s{i:04d}", "faults.work", seconds=1.0) for i in range(scaled(40))]
    )
    direct = make_launcher(env={"COROQ_CONCURRENCY": "5"}, name="direct")
    behind_proxy = make_launcher(
        redis_url=proxy.url, env={"COROQ_CONCURRENCY": "10"}, name="cutoff"
    )
    live = direct.start()
    cut_off = behind_proxy.start()
    processing = ledger.keys.processing(cut_off.worker_id)
    wait_for(lambda: ledger.queue_client.llen(processing) == 10, timeout=30, interval=0.005)
    held_ids = ids_in(ledger, processing)
    held = len(held_ids)

    def all_started_here() -> bool:
        records = ledger.records(held_ids).values()
        return all(
            r.get("status") == "running" and r["worker"] == cut_off.worker_id for r in records
        )

    # Cut off only once every held job has started (test_late_pop_reply_* covers a cut before).
    wait_for(all_started_here, timeout=10, interval=0.005)

    proxy.stall()  # the jobs finish their sleep meanwhile; their acks cannot get through
    wait_for(lambda: live.events("jobs.recovered"), timeout=HEARTBEAT_TTL + 20)
    time.sleep(0.5)
    proxy.resume()

    everything_final = ledger.wait_all_final(timeout=timeout_for(60))
    recovered = live.events("jobs.recovered")
    refused = cut_off.events("job.ack_lost")
    for worker in (cut_off, live):
        worker.terminate()
    exit_codes = [worker.wait(timeout=30) for worker in (cut_off, live)]
    records = ledger.records(ids)
    figures = ledger.figures(
        "connection_cut_past_ttl",
        held_when_cut_off=held,
        recovered=sum(line["count"] for line in recovered),
        late_acks_refused=len(refused),
    )
    figures.publish(record_property)

    assert everything_final, (figures.as_dict(), ledger.where_unfinished())
    assert figures.lost == 0, figures.as_dict()
    assert figures.succeeded == len(ids), figures.as_dict()
    assert {line["owner"] for line in recovered} == {cut_off.worker_id}
    assert sum(line["count"] for line in recovered) == held
    # The cut-off worker finished those jobs too late: its acks were refused. Each ran
    # again (on either worker, once the cut-off one was back), and only that run's success
    # was recorded, by the worker that ran it.
    assert {line["job_id"] for line in refused} == set(held_ids), cut_off.log_text()
    succeeded_by = {
        worker.worker_id: Counter(line["job_id"] for line in worker.events("job.succeeded"))
        for worker in (cut_off, live)
    }
    for job_id in held_ids:
        assert records[job_id]["status"] == "succeeded"
        assert records[job_id]["attempts"] == 2, records[job_id]
        assert [count[job_id] for count in succeeded_by.values()].count(1) == 1
        assert succeeded_by[records[job_id]["worker"]][job_id] == 1, records[job_id]
    assert cut_off.events("redis.unavailable")
    assert cut_off.events("redis.recovered")
    assert exit_codes == [0, 0]
    assert ledger.leftovers() == {"ready": 0, "delayed": 0, "processing": 0}


@pytest.mark.timeout(timeout_for(60))
def test_job_popped_just_before_a_cut_off_is_not_recorded_by_the_cut_off_worker(
    ledger: Ledger,
    proxy: FaultyProxy,
    make_launcher: Callable[..., WorkerLauncher],
    record_property: Callable[[str, Any], None],
) -> None:
    """The pop reaches Redis, its reply does not: the job sits in the cut-off worker's
    processing list, is recovered and finished by a live worker, and then the reply arrives.
    The late worker must see that it no longer holds the job (its liveness lapsed while the
    reply was held up, so it gives the job back unstarted; or its start script finds it gone
    from its processing list) and leave the finished job's record as the live worker left it:
    succeeded, not running again under the late one."""
    # A long blocking pop, so the cut-off worker surely waits inside Redis when the job comes.
    late = make_launcher(
        redis_url=proxy.url, env={"COROQ_POLL_TIMEOUT": "10", "COROQ_CONCURRENCY": "1"}, name="late"
    ).start()
    processing = ledger.keys.processing(late.worker_id)
    time.sleep(0.5)  # let its first pop get to Redis and block there
    proxy.stall()
    [job_id] = ledger.push([ledger.envelope("late-pop", "faults.work", seconds=0.1)])
    wait_for(lambda: ids_in(ledger, processing) == [job_id], timeout=5, interval=0.005)

    live = make_launcher(name="live").start()
    finished = ledger.wait_all_final(timeout=HEARTBEAT_TTL + 20)
    after_live = ledger.records([job_id])[job_id]
    proxy.resume()
    # The late reply now reaches its worker, which finds the job is no longer its own.
    wait_for(
        lambda: (
            late.events("job.not_held")
            or late.events("consumer.pop_while_lapsing")
            or late.events("job.ack_lost")
            or late.events("job.succeeded")
        ),
        timeout=20,
    )
    final = ledger.records([job_id])[job_id]
    figures = ledger.figures(
        "late_pop_reply",
        record_after_live=after_live,
        record_final=final,
        late_worker_events=[line["event"] for line in late.lines() if line.get("job_id") == job_id],
    )
    figures.publish(record_property)

    assert finished, after_live
    assert after_live["status"] == "succeeded", after_live
    assert after_live["worker"] == live.worker_id
    assert late.events("job.not_held") or late.events("consumer.pop_while_lapsing")
    assert not late.events("job.started")
    assert not late.events("job.succeeded")
    assert final["status"] == "succeeded", final
    assert final["worker"] == live.worker_id, final
    assert final["attempts"] == after_live["attempts"], final
