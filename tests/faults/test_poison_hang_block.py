"""Jobs that harm their worker: one that kills the process, one that never ends, and one that
blocks the event loop. Each ends where the contract says, and the other jobs still finish."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from tests.conftest import wait_for
from tests.faults.ledger import Ledger
from tests.faults.processes import FAST_TIMINGS, FaultWorker, WorkerLauncher
from tests.faults.scale import scaled, timeout_for

MAX_ATTEMPTS = 3
# Its own deaths, plus those that narrow down which job of a group of 4 kills the worker
# (docs/reliability.md#blame), plus one.
MOST_DEATHS = MAX_ATTEMPTS + 2 + 1


def dead_entry(ledger: Ledger, job_id: str) -> dict[str, Any]:
    entries = [orjson.loads(raw) for raw in ledger.queue_client.lrange(ledger.keys.dead, 0, -1)]
    [entry] = [entry for entry in entries if entry.get("id") == job_id]
    result: dict[str, Any] = entry
    return result


def supervise(
    ledger: Ledger, launcher: WorkerLauncher, poison: str, worker_id: str | None
) -> tuple[FaultWorker, list[int]]:
    """Restart the worker each time it dies, as systemd or Kubernetes would, until the poison
    job is dead-lettered; fail on a crash loop. Returns the last worker and the exit codes."""
    exits: list[int] = []
    worker = launcher.start(worker_id=worker_id, wait=False)
    while ledger.records([poison])[poison].get("status") != "dead":
        wait_for(
            lambda w=worker: (
                not w.alive() or ledger.records([poison])[poison].get("status") == "dead"
            ),
            timeout=30,
        )
        if worker.alive():
            break
        exits.append(worker.wait(timeout=5))
        assert len(exits) <= MOST_DEATHS, f"crash loop: {exits}"
        worker = launcher.start(worker_id=worker_id, wait=False)
    worker.wait_started()
    return worker, exits


@pytest.mark.timeout(timeout_for(90))
@pytest.mark.parametrize("same_id", [False, True], ids=["new-id-per-restart", "same-id"])
def test_job_that_kills_its_worker_ends_dead_as_worker_lost_after_max_attempts(
    same_id: bool,
    ledger: Ledger,
    make_launcher: Callable[..., WorkerLauncher],
    record_property: Callable[[str, Any], None],
) -> None:
    """A new id per restart is recovered by the reaper once the dead id's heartbeat expires;
    the same id (a fixed COROQ_WORKER_ID) takes its own leftovers back when it starts."""
    [poison] = ledger.push([ledger.envelope("poison", "faults.crash", max_attempts=MAX_ATTEMPTS)])
    # The same max_attempts: a good job in flight at a crash is not blamed for it.
    good = ledger.push(
        [
            ledger.envelope(f"g{i:03d}", "faults.work", seconds=0.05, max_attempts=MAX_ATTEMPTS)
            for i in range(scaled(20))
        ]
    )
    launcher = make_launcher(env={"COROQ_CONCURRENCY": "4"}, name="poisoned")
    fixed_id = f"fixed-{ledger.keys.queue}" if same_id else None
    worker, exits = supervise(ledger, launcher, poison, fixed_id)
    everything_final = ledger.wait_all_final(timeout=timeout_for(30))
    record = ledger.records([poison])[poison]
    figures = ledger.figures(
        f"poison_{'same_id' if same_id else 'new_id'}",
        crashes=len(exits),
        poison_attempts=record.get("attempts"),
        poison_handler_runs=ledger.starts().get(poison, 0),
        worker_processes=len(launcher.started),
    )
    figures.publish(record_property)

    assert everything_final, (figures.as_dict(), ledger.where_unfinished())
    assert set(exits) == {1}
    assert MAX_ATTEMPTS <= len(exits) <= MOST_DEATHS
    # Every start it made ran its handler; the losses beside other jobs were forgiven, and
    # once all its attempts were lost alone it was not started again.
    assert record["attempts"] == ledger.starts()[poison], record
    assert record["attempts"] - record.get("forgiven", 0) == MAX_ATTEMPTS, record
    assert record["status"] == "dead", record
    assert record["reason"] == "worker_lost", record
    entry = dead_entry(ledger, poison)
    assert entry["reason"] == "worker_lost"
    assert orjson.loads(entry["raw"])["id"] == poison
    assert figures.dead == {"worker_lost": 1}, figures.as_dict()
    assert figures.succeeded == len(good), figures.as_dict()
    assert figures.lost == 0
    worker.terminate()
    assert worker.wait(timeout=30) == 0


@pytest.mark.timeout(timeout_for(60))
def test_hanging_job_times_out_is_retried_then_dead_with_reason_timeout(
    ledger: Ledger,
    make_launcher: Callable[..., WorkerLauncher],
    record_property: Callable[[str, Any], None],
) -> None:
    [hang] = ledger.push(
        [ledger.envelope("hang", "faults.hang", max_attempts=MAX_ATTEMPTS, timeout=0.3)]
    )
    good = ledger.push(
        [ledger.envelope(f"g{i:03d}", "faults.work", seconds=0.05) for i in range(scaled(20))]
    )
    worker = make_launcher(env={"COROQ_CONCURRENCY": "4"}, name="hang").start()
    everything_final = ledger.wait_all_final(timeout=timeout_for(30))
    record = ledger.records([hang])[hang]
    mine = [line for line in worker.lines() if line.get("job_id") == hang]
    events = Counter(line["event"] for line in mine)
    figures = ledger.figures(
        "hanging_job",
        hang_attempts=record.get("attempts"),
        hang_events=dict(events),
        retry_delays_s=[line.get("delay_s") for line in mine if line["event"] == "job.retrying"],
    )
    figures.publish(record_property)

    assert everything_final, (figures.as_dict(), ledger.where_unfinished())
    assert record["status"] == "dead", record
    assert record["reason"] == "timeout", record
    assert record["attempts"] == MAX_ATTEMPTS, record
    assert ledger.starts()[hang] == MAX_ATTEMPTS
    assert events["job.failed"] == MAX_ATTEMPTS
    assert events["job.retrying"] == MAX_ATTEMPTS - 1
    assert events["job.dead"] == 1
    assert {line["reason"] for line in mine if line["event"] == "job.failed"} == {"timeout"}
    entry = dead_entry(ledger, hang)
    assert (entry["reason"], entry["attempts"]) == ("timeout", MAX_ATTEMPTS)
    assert figures.succeeded == len(good)
    assert worker.alive()


@pytest.mark.timeout(timeout_for(60))
def test_blocking_sleep_in_async_task_is_reported_and_other_jobs_still_finish(
    ledger: Ledger,
    make_launcher: Callable[..., WorkerLauncher],
    record_property: Callable[[str, Any], None],
) -> None:
    """`time.sleep` in `async def` stalls the loop for longer than the heartbeat TTL: the
    watchdog names the job, and the heartbeat (its own thread) keeps the worker alive, so a
    second worker recovers nothing from it."""
    blocked_for = 2 * float(FAST_TIMINGS["COROQ_HEARTBEAT_TTL"])
    launcher = make_launcher(
        env={"COROQ_CONCURRENCY": "4", "COROQ_LOOP_LAG_THRESHOLD": "0.2"}, name="block"
    )
    workers = [launcher.start(), launcher.start()]
    [blocker] = ledger.push([ledger.envelope("blocker", "faults.block", seconds=blocked_for)])
    others = ledger.push(
        [ledger.envelope(f"o{i:03d}", "faults.work", seconds=0.05) for i in range(scaled(40))]
    )
    everything_final = ledger.wait_all_final(timeout=timeout_for(30))
    reports = launcher.events("loop.blocked")
    recovered = launcher.events("jobs.recovered")
    figures = ledger.figures(
        "loop_blocking",
        blocked_s=blocked_for,
        loop_blocked_reports=[
            {key: line.get(key) for key in ("job_id", "task", "blocked_ms")} for line in reports
        ],
        recovered=len(recovered),
    )
    figures.publish(record_property)

    assert everything_final, (figures.as_dict(), ledger.where_unfinished())
    assert figures.succeeded == 1 + len(others), figures.as_dict()
    assert any(
        line.get("job_id") == blocker and line.get("task") == "faults.block" for line in reports
    ), reports
    for line in reports:
        assert line["blocked_ms"] >= 200, line
    assert recovered == [], "a worker whose loop was blocked was taken for dead"
    assert figures.extra_starts == 0
    assert all(worker.alive() for worker in workers)
