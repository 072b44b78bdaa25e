"""A job that kills its worker takes no other job with it (docs/reliability.md#blame).

Real worker processes under a supervisor loop that restarts each one that dies, as systemd or
Docker would. Every job id is followed to its terminal state in the records, and every start
is counted by the tasks themselves in the ledger.

The short form runs the poison job among 10 and 100 ordinary jobs; `COROQ_FAULTS_SCALE=N`
(the long form) multiplies the smaller runs, up to 100 jobs in flight.
"""

from __future__ import annotations

import math
import os
import signal
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.faults.ledger import Ledger
from tests.faults.processes import FaultWorker, WorkerLauncher
from tests.faults.scale import scaled, timeout_for

MAX_ATTEMPTS = 3
# The connection pool of the test tasks' ledger client holds 100 connections.
MOST_CONCURRENCY = 100


def deaths_allowed(group: int, poisons: int = 1) -> int:
    """The bound on worker deaths: each poison's own `MAX_ATTEMPTS`, plus the crashes that
    split a group of suspects in halves until the culprit runs alone, plus one."""
    return poisons * (MAX_ATTEMPTS + math.ceil(math.log2(max(group, 2))) + 1)


def supervise_until(
    launcher: WorkerLauncher,
    worker_id: str | None,
    done: Callable[[], bool],
    most_deaths: int,
    timeout: float,
) -> tuple[FaultWorker, list[int]]:
    """Start a worker and start it again each time it dies, until `done()`; fails when the
    deaths pass `most_deaths` (a crash loop). Returns the last worker and the exit codes."""
    exits: list[int] = []
    worker = launcher.start(worker_id=worker_id, wait=False)
    while not done():
        wait_for(lambda w=worker: not w.alive() or done(), timeout=timeout)
        if worker.alive():
            break
        exits.append(worker.wait(timeout=5))
        assert len(exits) <= most_deaths, f"crash loop: {exits}"
        worker = launcher.start(worker_id=worker_id, wait=False)
    return worker, exits


def ordinary(ledger: Ledger, count: int, seconds: float, prefix: str = "g") -> list[str]:
    return ledger.push(
        [
            ledger.envelope(
                f"{prefix}{i:04d}", "faults.work", seconds=seconds, max_attempts=MAX_ATTEMPTS
            )
            for i in range(count)
        ]
    )


def poison(ledger: Ledger, name: str, task_name: str = "faults.crash", **kwargs: Any) -> str:
    [job_id] = ledger.push([ledger.envelope(name, task_name, max_attempts=MAX_ATTEMPTS, **kwargs)])
    return job_id


def assert_poison_dead_after_its_own_deaths(
    ledger: Ledger, job_id: str, *, alone_in_its_group: bool = True
) -> None:
    """Dead as `worker_lost`, all its attempts held against it, its record counting the
    starts that happened. With another poison in its group, a start of it may be counted and
    its worker killed by the other before its handler began (then the ledger, which counts
    handler runs, has one fewer)."""
    record = ledger.records([job_id])[job_id]
    runs = ledger.starts()[job_id]
    assert record["status"] == "dead", record
    assert record["reason"] == "worker_lost", record
    if alone_in_its_group:
        assert record["attempts"] == runs, (record, runs)
    else:
        assert record["attempts"] >= runs, (record, runs)
    assert record["attempts"] - record.get("forgiven", 0) == MAX_ATTEMPTS, record


def finish(ledger: Ledger, launcher: WorkerLauncher, worker: FaultWorker, ids: list[str]) -> None:
    assert ledger.wait_all_final(timeout=timeout_for(60), ids=ids), ledger.where_unfinished()
    worker.terminate()
    assert worker.wait(timeout=30) == 0
    assert not any(ledger.leftovers().values()), ledger.leftovers()
    assert not ledger.queue_client.exists(ledger.keys.suspects)


@pytest.mark.timeout(timeout_for(240))
@pytest.mark.parametrize(
    ("concurrency", "same_id"),
    [(10, True), (10, False), (100, True)],
    ids=["c10-same-id", "c10-new-id", "c100-same-id"],
)
def test_a_job_that_kills_its_worker_dead_letters_no_job_beside_it(
    concurrency: int,
    same_id: bool,
    ledger: Ledger,
    make_launcher: Callable[..., WorkerLauncher],
    record_property: Callable[[str, Any], None],
) -> None:
    """A poison job pushed ahead of `concurrency` ordinary jobs of half a second, all taken in
    the same batch, the worker restarted after each death."""
    # The long form scales the jobs; the concurrency stops at what the test tasks' own Redis
    # connections allow.
    concurrency = min(scaled(concurrency), MOST_CONCURRENCY)
    culprit = poison(ledger, "poison")
    good = ordinary(ledger, concurrency, seconds=0.5)
    launcher = make_launcher(env={"COROQ_CONCURRENCY": str(concurrency)}, name="poisoned")
    worker_id = f"fixed-{ledger.keys.queue}" if same_id else None
    everything = [culprit, *good]
    worker, exits = supervise_until(
        launcher,
        worker_id,
        lambda: ledger.final_count(everything) == len(everything),
        most_deaths=deaths_allowed(concurrency),
        timeout=timeout_for(60),
    )
    figures = ledger.figures(
        f"poison_isolation_c{concurrency}_{'same_id' if same_id else 'new_id'}",
        ids=everything,
        deaths=len(exits),
        trials=len(launcher.events("job.trial")),
        blamed=sum(line.get("blamed", 0) for line in launcher.events("jobs.recovered")),
    )
    figures.publish(record_property)
    finish(ledger, launcher, worker, everything)

    assert_poison_dead_after_its_own_deaths(ledger, culprit)
    assert figures.succeeded == len(good), figures.as_dict()
    assert figures.dead == {"worker_lost": 1}, figures.as_dict()
    assert set(exits) == {1}
    assert MAX_ATTEMPTS <= len(exits) <= deaths_allowed(concurrency)


@pytest.mark.timeout(timeout_for(240))
def test_two_poison_jobs_in_one_batch_end_dead_and_no_other_job_does(
    ledger: Ledger,
    make_launcher: Callable[..., WorkerLauncher],
    record_property: Callable[[str, Any], None],
) -> None:
    first = poison(ledger, "poison-a")
    good = ordinary(ledger, scaled(6), seconds=0.5)
    second = poison(ledger, "poison-b")
    launcher = make_launcher(env={"COROQ_CONCURRENCY": "10"}, name="two")
    everything = [first, second, *good]
    worker, exits = supervise_until(
        launcher,
        f"fixed-{ledger.keys.queue}",
        lambda: ledger.final_count(everything) == len(everything),
        most_deaths=deaths_allowed(10, poisons=2),
        timeout=timeout_for(60),
    )
    finish(ledger, launcher, worker, everything)

    assert_poison_dead_after_its_own_deaths(ledger, first, alone_in_its_group=False)
    assert_poison_dead_after_its_own_deaths(ledger, second, alone_in_its_group=False)
    figures = ledger.figures("two_poisons", ids=everything, deaths=len(exits))
    figures.publish(record_property)
    assert figures.succeeded == len(good), figures.as_dict()
    assert figures.dead == {"worker_lost": 2}, figures.as_dict()


@pytest.mark.timeout(timeout_for(240))
def test_a_job_that_kills_its_worker_only_from_its_second_attempt_is_blamed_for_those_only(
    ledger: Ledger,
    make_launcher: Callable[..., WorkerLauncher],
    record_property: Callable[[str, Any], None],
) -> None:
    """Its first attempt fails as an ordinary failure (counted, retried); from the second on,
    it kills the worker: one failure and two deaths of its own use its three attempts."""
    culprit = poison(ledger, "late-poison", "faults.crash_from", attempt=2)
    good = ordinary(ledger, scaled(8), seconds=0.5)
    launcher = make_launcher(env={"COROQ_CONCURRENCY": "10"}, name="late")
    everything = [culprit, *good]
    worker, exits = supervise_until(
        launcher,
        f"fixed-{ledger.keys.queue}",
        lambda: ledger.final_count(everything) == len(everything),
        most_deaths=deaths_allowed(10),
        timeout=timeout_for(60),
    )
    finish(ledger, launcher, worker, everything)

    # One ordinary failure and two deaths of its own use its three attempts.
    assert_poison_dead_after_its_own_deaths(ledger, culprit)
    figures = ledger.figures("late_poison", ids=everything, deaths=len(exits))
    figures.publish(record_property)
    assert figures.succeeded == len(good), figures.as_dict()
    assert figures.dead == {"worker_lost": 1}, figures.as_dict()
    assert 1 <= len(exits) <= deaths_allowed(10)


@pytest.mark.timeout(timeout_for(180))
def test_a_worker_killed_from_outside_counts_no_attempt_against_its_jobs(
    ledger: Ledger,
    make_launcher: Callable[..., WorkerLauncher],
    record_property: Callable[[str, Any], None],
) -> None:
    """SIGKILL with 50 jobs in flight, no job at fault: each runs again and succeeds, and its
    record forgives the lost attempt."""
    in_flight = min(scaled(50), MOST_CONCURRENCY)
    good = ordinary(ledger, in_flight, seconds=2.0)
    launcher = make_launcher(env={"COROQ_CONCURRENCY": str(in_flight)}, name="killed")
    worker_id = f"fixed-{ledger.keys.queue}"
    worker = launcher.start(worker_id=worker_id)
    wait_for(lambda: len(ledger.starts()) == in_flight, timeout=timeout_for(30))
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    worker = launcher.start(worker_id=worker_id)
    finish(ledger, launcher, worker, good)

    trials = [line["group"] for line in launcher.events("job.trial")]
    figures = ledger.figures(f"sigkill_{in_flight}_in_flight", ids=good, trials=trials)
    figures.publish(record_property)
    assert figures.succeeded == in_flight, figures.as_dict()
    records = ledger.records(good)
    for job_id in good:
        record = records[job_id]
        assert record["attempts"] == 2, record  # the lost run and the re-run
        assert record.get("forgiven") == 1, record
