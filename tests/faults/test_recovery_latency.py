"""A dead worker's jobs are recovered within heartbeat TTL + reaper interval, also when the
link between the reaper and Redis is slow.

Each trial leaves behind exactly what a worker killed while holding a job leaves: the job in
its processing list, its id in `coroq:workers`, and its heartbeat key counting down. A live
worker, reaching Redis through a proxy that adds latency, must move the job back and run it.
The latency widens the time between the reaper's reads, so a reaper that decides on two
separate reads (one inside the recovery script, one after it) is caught deciding on a
heartbeat that expired in between.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from producer.keys import workers_key
from tests.faults.ledger import Ledger
from tests.faults.processes import WorkerLauncher
from tests.faults.proxy import FaultyProxy
from tests.faults.scale import scaled, timeout_for
from worker.local_redis import RedisServerProcess

ONE_WAY_LATENCY_S = 0.15
REAPER_INTERVAL_S = 0.5
# Slack on top of the contract's TTL + reaper interval: the reaper's own round trips.
SLACK_S = 20 * ONE_WAY_LATENCY_S + 2.0


@pytest.fixture
def slow_link(redis_server: RedisServerProcess) -> Iterator[FaultyProxy]:
    with FaultyProxy(redis_server.port, latency=ONE_WAY_LATENCY_S) as proxy:
        yield proxy


def leave_dead_worker(ledger: Ledger, ghost: str, job_id: str, ttl_ms: int) -> None:
    """The state a worker killed right after a heartbeat leaves behind, holding one job."""
    raw = ledger.envelope(job_id, "faults.work").to_json()
    keys = ledger.keys
    pipe = ledger.queue_client.pipeline(transaction=True)
    pipe.lpush(keys.processing(ghost), raw)
    pipe.sadd(workers_key(keys.prefix), ghost)
    pipe.set(keys.worker(ghost), b"{}", px=ttl_ms)
    pipe.execute()
    ledger.adopt([job_id])


@pytest.mark.timeout(timeout_for(150))
def test_dead_workers_jobs_are_recovered_in_time_over_a_slow_link(
    ledger: Ledger,
    slow_link: FaultyProxy,
    make_launcher: Callable[..., WorkerLauncher],
    record_property: Callable[[str, Any], None],
) -> None:
    env = {
        # The heartbeat's socket timeout is its interval: keep it above the round trip.
        "COROQ_HEARTBEAT_INTERVAL": "1.0",
        "COROQ_HEARTBEAT_TTL": "3.0",
        "COROQ_REAPER_INTERVAL": str(REAPER_INTERVAL_S),
    }
    live = make_launcher(redis_url=slow_link.url, env=env, name="reaper").start()
    client, keys = ledger.queue_client, ledger.keys
    rng = random.Random()
    late: list[dict[str, Any]] = []
    waited: list[float] = []
    for trial in range(scaled(8)):
        ghost, job_id = f"ghost-{trial}-{keys.queue}", f"g{trial:03d}"
        ttl_ms = rng.randint(600, 1400)
        leave_dead_worker(ledger, ghost, job_id, ttl_ms)
        began = time.monotonic()
        deadline = began + ttl_ms / 1000 + REAPER_INTERVAL_S + SLACK_S
        while client.llen(keys.processing(ghost)) and time.monotonic() < deadline:
            time.sleep(0.02)
        waited.append(round(time.monotonic() - began, 2))
        if client.llen(keys.processing(ghost)):
            late.append(
                {
                    "ghost": ghost,
                    "held": client.llen(keys.processing(ghost)),
                    "in_workers_set": bool(client.sismember(workers_key(keys.prefix), ghost)),
                    "heartbeat_pttl_ms": client.pttl(keys.worker(ghost)),
                }
            )
    # Jobs left behind would wait for the reaper's occasional full scan: do not wait for it.
    everything_final = not late and ledger.wait_all_final(timeout=timeout_for(30))
    figures = ledger.figures(
        "recovery_over_slow_link",
        one_way_latency_s=ONE_WAY_LATENCY_S,
        dead_workers=len(waited),
        recovered_late=len(late),
        recovery_waits_s=waited,
        late_evidence=late[:3],
    )
    figures.publish(record_property)

    assert late == [], late
    assert everything_final, (figures.as_dict(), ledger.where_unfinished())
    assert figures.succeeded == figures.jobs
    assert live.alive()
