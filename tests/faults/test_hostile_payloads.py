"""Hostile payloads pushed raw with a plain Redis client: each one is dead-lettered with a
reason and its exact bytes, none crashes the worker, and a good job after them succeeds."""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from tests.conftest import wait_for
from tests.faults.hostile import hostile_payloads, odd_but_valid_payloads
from tests.faults.ledger import Ledger
from tests.faults.processes import WorkerLauncher
from tests.faults.scale import timeout_for


def raw_bytes(entry: dict[str, Any]) -> bytes:
    if "raw_base64" in entry:
        return base64.b64decode(entry["raw_base64"])
    return str(entry["raw"]).encode()


@pytest.mark.timeout(timeout_for(90))
def test_hostile_payloads_are_dead_lettered_with_a_reason_and_the_worker_serves_on(
    ledger: Ledger,
    make_launcher: Callable[..., WorkerLauncher],
    record_property: Callable[[str, Any], None],
) -> None:
    hostile = hostile_payloads()
    odd = odd_but_valid_payloads()
    client, keys = ledger.queue_client, ledger.keys
    worker = make_launcher(env={"COROQ_CONCURRENCY": "10"}, name="hostile").start()
    for raw, _ in hostile.values():
        client.lpush(keys.ready, raw)
    for raw in odd.values():
        client.lpush(keys.ready, raw)
    odd_ids = [orjson.loads(raw)["id"] for raw in odd.values()]
    ledger.adopt(odd_ids)
    [good] = ledger.push([ledger.envelope("good-after", "faults.work")])

    everything_final = ledger.wait_all_final(timeout=timeout_for(60))
    dead = [orjson.loads(entry) for entry in client.lrange(keys.dead, 0, -1)]
    by_raw = {raw_bytes(entry): entry for entry in dead}
    outcome = {
        name: by_raw[raw]["reason"] if raw in by_raw else "<missing>"
        for name, (raw, _) in hostile.items()
    }
    figures = ledger.figures(
        "hostile_payloads",
        hostile_payloads=len(hostile),
        dead_lettered=len(dead),
        reasons=dict(Counter(outcome.values())),
        odd_but_valid=len(odd),
        worker_alive=worker.alive(),
    )
    figures.publish(record_property)

    assert worker.alive(), worker.log_text()
    assert everything_final, (figures.as_dict(), ledger.where_unfinished())
    assert figures.succeeded == len(odd) + 1, figures.as_dict()
    assert ledger.records([good])[good]["status"] == "succeeded"
    # Each hostile payload is in the dead list exactly once, with its exact bytes...
    assert Counter(raw_bytes(entry) for entry in dead) == Counter(
        raw for raw, _ in hostile.values()
    )
    # ...and the reason the contract names (or, for `None`, some reason).
    for name, (_, expected) in hostile.items():
        assert outcome[name] == expected or (expected is None and outcome[name]), (name, outcome)
        entry = by_raw[hostile[name][0]]
        assert entry["error"], entry
        assert entry["id"], entry
    assert len(worker.events("worker.started")) == 1
    # Each is logged just after its dead-letter write: the last line may trail the ledger.
    wait_for(lambda: len(worker.events("job.dead")) >= len(hostile))
    assert len(worker.events("job.dead")) == len(hostile)
    assert ledger.leftovers() == {"ready": 0, "delayed": 0, "processing": 0}
    worker.terminate()
    assert worker.wait(timeout=30) == 0
