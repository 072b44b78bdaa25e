"""SIGTERM under load, with retries waiting in the delayed set and scheduled jobs not yet due:
the worker exits 0 within its grace period, nothing is lost, and nothing runs twice to the end.

Jobs still running when the grace period ends are cancelled and put back at the consuming end
of the ready list, their attempt not counted; jobs waiting in the delayed set stay there. A
second worker then finishes everything, each job's handler completing exactly once.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from producer.envelope import JobEnvelope, stamp
from tests.conftest import wait_for
from tests.faults.ledger import Ledger
from tests.faults.processes import FAST_TIMINGS, WorkerLauncher
from tests.faults.scale import scaled, timeout_for

GRACE_S = 1.0
# After the grace period the worker still stops its consumers and housekeeping and clears
# its heartbeat; a bounded margin for that, not a speed target.
EXIT_MARGIN_S = float(FAST_TIMINGS["COROQ_POLL_TIMEOUT"]) + 10
RETRY_AFTER_S = 5.0
SCHEDULED_IN_S = 6.0


def schedule(ledger: Ledger, envelopes: list[JobEnvelope], due_in: float) -> None:
    """Jobs pushed for later, straight into the delayed set (any producer may do this)."""
    due_ms = int((time.time() + due_in) * 1000)
    ledger.queue_client.zadd(
        ledger.keys.delayed, {stamp(envelope).to_json(): due_ms for envelope in envelopes}
    )
    ledger.adopt(str(envelope.id) for envelope in envelopes)


@dataclass
class Load:
    slow: set[str]
    flaky: set[str]
    scheduled: set[str]


def push_load(ledger: Ledger, rng: random.Random) -> Load:
    quick = [
        ledger.envelope(f"q{i:05d}", "faults.work", seconds=round(rng.uniform(0.05, 0.3), 3))
        for i in range(scaled(300))
    ]
    # Taken first and outliving the grace period: these are surely cancelled and put back.
    slow = [ledger.envelope(f"s{i:05d}", "faults.work", seconds=8) for i in range(4)]
    # Fail once, asking to be retried later: they wait in the delayed set at the SIGTERM.
    flaky = [
        ledger.envelope(f"f{i:05d}", "faults.flaky", failures=1, retry_after=RETRY_AFTER_S)
        for i in range(scaled(30))
    ]
    mixed = quick + flaky
    rng.shuffle(mixed)
    ledger.push(slow + mixed)
    scheduled = [ledger.envelope(f"d{i:05d}", "faults.work") for i in range(scaled(20))]
    schedule(ledger, scheduled, SCHEDULED_IN_S)
    return Load(*({str(e.id) for e in group} for group in (slow, flaky, scheduled)))


@dataclass
class Between:
    """The queue as the first worker left it."""

    places: dict[str, Counter[str]]
    records: dict[str, dict[str, Any]]
    requeued: list[str]
    ready_in_order: list[str]

    @property
    def finished(self) -> set[str]:
        return {job_id for job_id, r in self.records.items() if r.get("status") == "succeeded"}


def check_between(between: Between, load: Load) -> None:
    """Every job in exactly one place, none in a processing list; cancelled jobs back at the
    consuming end of the ready list, their attempt uncounted."""
    places = between.places
    assert places["processing"] == Counter(), "a job was left in a processing list"
    for place in ("ready", "delayed"):
        assert max(places[place].values(), default=1) == 1, f"a job twice in {place}"
    assert not (set(places["ready"]) | set(places["delayed"])) & between.finished
    assert not set(places["ready"]) & set(places["delayed"])
    requeued = between.requeued
    assert requeued, "no job outlived the grace period"
    assert set(between.ready_in_order[: len(requeued)]) == set(requeued)
    for job_id in requeued:
        assert between.records[job_id]["status"] == "queued", between.records[job_id]
    for job_id in load.slow:
        assert job_id in requeued or between.records[job_id] == {}, between.records[job_id]


@pytest.mark.timeout(timeout_for(120))
def test_sigterm_under_load_with_retries_and_delayed_jobs_loses_nothing_and_runs_nothing_twice(
    ledger: Ledger,
    make_launcher: Callable[..., WorkerLauncher],
    record_property: Callable[[str, Any], None],
) -> None:
    seed = random.randrange(2**32)
    load = push_load(ledger, random.Random(seed))
    env = {"COROQ_CONCURRENCY": "10", "COROQ_SHUTDOWN_GRACE": str(GRACE_S)}
    launcher = make_launcher(env=env, name="drain")
    first = launcher.start()
    wait_for(
        lambda: load.flaky & set(ledger.queued_ids()["delayed"]) and ledger.done_count() >= 50,
        timeout=60,
        interval=0.02,
    )
    signalled = time.monotonic()
    first.terminate()
    exit_code = first.wait(timeout=GRACE_S + EXIT_MARGIN_S)
    stopped_in_s = round(time.monotonic() - signalled, 2)
    between = Between(
        ledger.queued_ids(),
        ledger.records(),
        [line["job_id"] for line in first.events("job.requeued")],
        [
            orjson.loads(raw)["id"]
            for raw in reversed(ledger.queue_client.lrange(ledger.keys.ready, 0, -1))
        ],
    )
    lost_between = ledger.figures("sigterm_between_workers").lost

    second = launcher.start()
    everything_final = ledger.wait_all_final(timeout=timeout_for(60))
    second.terminate()
    second_exit = second.wait(timeout=GRACE_S + EXIT_MARGIN_S)
    figures = ledger.figures(
        "sigterm_under_load",
        seed=seed,
        grace_s=GRACE_S,
        stopped_in_s=stopped_in_s,
        cancelled_and_requeued=len(between.requeued),
        retrying_at_sigterm=len(load.flaky & set(between.places["delayed"])),
        scheduled_at_sigterm=len(load.scheduled & set(between.places["delayed"])),
        finished_by_first=len(between.finished),
        lost_between_workers=lost_between,
    )
    figures.publish(record_property)

    assert exit_code == 0, first.log_text()
    assert lost_between == 0
    check_between(between, load)
    assert everything_final, (figures.as_dict(), ledger.where_unfinished())
    assert second_exit == 0
    assert figures.lost == 0, figures.as_dict()
    assert figures.succeeded == figures.jobs, figures.as_dict()
    # Double runs: a handler that completed more than once. None, despite the cancellations.
    assert figures.double_completions == 0, figures.as_dict()
    assert ledger.completions() == dict.fromkeys(ledger.ids, 1)
    # A cancelled run is not an attempt; a failed one is.
    attempts = {job_id: r.get("attempts") for job_id, r in ledger.records().items()}
    assert attempts == {job_id: 2 if job_id in load.flaky else 1 for job_id in ledger.ids}
    assert ledger.leftovers() == {"ready": 0, "delayed": 0, "processing": 0}
