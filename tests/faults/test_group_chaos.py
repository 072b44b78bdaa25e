"""A group's callback under SIGKILL chaos (docs/futures.md#groups): workers killed at random
moments while the members run; the callback is pushed once, after every member, with every
member's outcome, and runs once."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from producer import Producer, call
from tests.faults.ledger import Ledger
from tests.faults.processes import WorkerLauncher
from tests.faults.scale import scaled, timeout_for
from tests.faults.tasks import starts_key
from tests.faults.test_sigkill_chaos import CONCURRENCY, MAX_ATTEMPTS, kill_at_random_moments


@pytest.mark.timeout(timeout_for(200))
def test_a_groups_callback_is_pushed_once_through_sigkills(
    ledger: Ledger, make_launcher: Callable[..., WorkerLauncher]
) -> None:
    seed = random.randrange(2**32)
    members, kills = scaled(1500), scaled(5)
    with Producer(client=ledger.queue_client, queue=ledger.keys.queue) as producer:
        run_group_chaos(ledger, make_launcher, producer, seed, members, kills)


def run_group_chaos(
    ledger: Ledger,
    make_launcher: Callable[..., WorkerLauncher],
    producer: Producer,
    seed: int,
    members: int,
    kills: int,
) -> None:
    rng = random.Random(seed)
    group = producer.group(
        [
            call(
                "faults.work",
                ledger=ledger.name,
                name=f"m{i:05d}",
                seconds=round(rng.uniform(0.0, 0.03), 4),
                _id=f"m{i:05d}",
                _max_attempts=MAX_ATTEMPTS,
            )
            for i in range(members)
        ],
        then=call("faults.group_report", ledger=ledger.name, name="report", _id="report"),
    )
    ledger.adopt([*(f"m{i:05d}" for i in range(members)), "report"])
    launcher = make_launcher(env={"COROQ_CONCURRENCY": str(CONCURRENCY)}, name="groups")
    workers = [launcher.start() for _ in range(2)]

    held_at_kills = kill_at_random_moments(ledger, launcher, workers, kills, seed)
    assert ledger.wait_all_final(timeout=timeout_for(90)), ledger.where_unfinished()
    outcome = group.callback.result(timeout=timeout_for(30))
    assert outcome == members, f"seed {seed}"

    client = ledger.ledger_client
    assert (
        client.hget(f"{starts_key(ledger.name)}:report", "report")
        == f"{members}/{members}".encode()
    )
    assert client.hget(starts_key(ledger.name), "report") == b"1"  # pushed once, run once
    assert ledger.queue_client.hget(ledger.keys.group(group.id), "left") == b"0"
    assert len(held_at_kills) == kills
