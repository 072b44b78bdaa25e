"""Chains of dependent jobs under SIGKILL chaos (docs/futures.md#dependencies): workers
killed at random moments while the chains run; every job ends succeeded, and none starts
before the job it waits for has succeeded."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from producer import Producer
from tests.faults.ledger import Ledger
from tests.faults.processes import WorkerLauncher
from tests.faults.scale import scaled, timeout_for
from tests.faults.test_sigkill_chaos import CONCURRENCY, MAX_ATTEMPTS, kill_at_random_moments

CHAIN = 5


@pytest.mark.timeout(timeout_for(200))
def test_chains_run_in_order_through_sigkills(
    ledger: Ledger, make_launcher: Callable[..., WorkerLauncher]
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    chains, kills = scaled(200), scaled(4)
    waits: dict[str, str] = {}
    with Producer(client=ledger.queue_client, queue=ledger.keys.queue) as producer:
        for c in range(chains):
            previous = None
            for link in range(CHAIN):
                job_id = f"c{c:04d}-{link}"
                producer.push(
                    "faults.work",
                    ledger=ledger.name,
                    name=job_id,
                    seconds=round(rng.uniform(0.0, 0.02), 4),
                    _id=job_id,
                    _max_attempts=MAX_ATTEMPTS,
                    _after=None if previous is None else [previous],
                )
                if previous is not None:
                    waits[job_id] = previous
                previous = job_id
                ledger.adopt([job_id])
    launcher = make_launcher(env={"COROQ_CONCURRENCY": str(CONCURRENCY)}, name="chains")
    workers = [launcher.start() for _ in range(2)]

    kill_at_random_moments(ledger, launcher, workers, kills, seed)
    assert ledger.wait_all_final(timeout=timeout_for(90)), ledger.where_unfinished()
    records = ledger.records()
    assert {r["status"] for r in records.values()} == {"succeeded"}, f"seed {seed}"
    for job_id, waited in waits.items():
        assert records[job_id]["started_at"] >= records[waited]["finished_at"], (job_id, seed)
    assert set(ledger.completions()) == set(ledger.ids)
    assert not ledger.queue_client.keys(f"{ledger.keys.base}:dependents:*")
