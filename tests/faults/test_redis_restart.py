"""Redis restarted under a running worker, with AOF persistence as docs/reliability.md asks.

Jobs are pushed all the time (through the Producer API) while Redis is stopped and started
again on the same port and data directory, gracefully (SIGTERM: Redis writes and fsyncs its
AOF on the way out) or not (SIGKILL). Each pushed batch is classified by when its push was
acknowledged:

- durable: acknowledged before a SIGTERM, or more than 1 s before a SIGKILL, or after the
  restart. None of these may be lost.
- in the everysec window: acknowledged in the last second before a SIGKILL. `appendfsync
  everysec` lets a machine crash lose up to about a second of writes; a killed *process*
  should lose none (Redis writes the AOF before it replies, and the page cache survives the
  process). These are counted apart and reported, not asserted.
- unacknowledged: the push failed (Redis was down). They may or may not have arrived; those
  that did must still run, those that did not are reported.

The worker must come through in the same process, logging the outage and its end.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from producer import Producer
from producer.errors import CoroqError, PartialPush
from producer.keys import QueueKeys
from tests.conftest import wait_for
from tests.faults.ledger import Ledger
from tests.faults.processes import WorkerLauncher
from tests.faults.scale import scaled, timeout_for
from worker.local_redis import RedisServerProcess, free_port

AOF = ("--appendonly", "yes", "--appendfsync", "everysec")
EVERYSEC_WINDOW_S = 1.0
DOWN_FOR_S = 1.0
PHASE_S = 1.2
BATCH = 40


class RestartableRedis:
    """A redis-server with AOF on, restarted on the same port and data directory."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir()
        self.data_dir = data_dir
        self.port = free_port()
        self.server = self._new().start()

    def _new(self) -> RedisServerProcess:
        return RedisServerProcess(port=self.port, data_dir=self.data_dir, extra_args=AOF)

    @property
    def url(self) -> str:
        return self.server.url

    def restart(self, *, kill: bool) -> float:
        """Stop (SIGKILL or SIGTERM), stay down a while, start again; return when it went."""
        went = time.monotonic()
        if kill:
            self.server.kill()
        else:
            self.server.stop()
        time.sleep(DOWN_FOR_S)
        self.server = self._new().start()
        return went

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RestartableRedis]:
    server = RestartableRedis(tmp_path / "redis-data")
    yield server
    server.stop()


@pytest.fixture
def aof_client(aof_redis: RestartableRedis) -> Iterator[redis.Redis]:
    """A client of the restarted server; it reconnects by itself after each restart."""
    client = redis.Redis.from_url(aof_redis.url)
    yield client
    client.close()


@dataclass
class PushedBatch:
    ids: list[str]
    acknowledged_at: float | None  # monotonic; None when the push failed


@dataclass
class Pusher:
    """Pushes batches of jobs without pause, in a thread, recording when each was acknowledged."""

    ledger: Ledger
    producer: Producer
    rng: random.Random
    batches: list[PushedBatch] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    _next: int = 0

    def run(self) -> None:
        while not self.stop.wait(0.04):
            envelopes = [
                self.ledger.envelope(
                    f"p{self._next + i:06d}",
                    "faults.work",
                    seconds=round(self.rng.uniform(0, 0.02), 4),
                )
                for i in range(BATCH)
            ]
            self._next += BATCH
            ids = [str(envelope.id) for envelope in envelopes]
            try:
                self.producer.push_many(envelopes)
            except PartialPush as exc:
                # What went in for sure is acknowledged; the rest is not.
                sure = set(exc.pushed)
                self.batches.append(PushedBatch([i for i in ids if i in sure], time.monotonic()))
                self.batches.append(PushedBatch([i for i in ids if i not in sure], None))
            except (redis.RedisError, CoroqError):
                self.batches.append(PushedBatch(ids, None))
            else:
                self.batches.append(PushedBatch(ids, time.monotonic()))


def classify(batches: list[PushedBatch], restarts: list[float], kill: bool) -> dict[str, list[str]]:
    classes: dict[str, list[str]] = {"durable": [], "window": [], "unacknowledged": []}
    for batch in batches:
        if batch.acknowledged_at is None:
            classes["unacknowledged"] += batch.ids
        elif kill and any(
            went - EVERYSEC_WINDOW_S <= batch.acknowledged_at < went for went in restarts
        ):
            classes["window"] += batch.ids
        else:
            classes["durable"] += batch.ids
    return classes


@pytest.mark.timeout(timeout_for(150))
@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_worker_survives_redis_restarts_and_no_acknowledged_job_is_lost(
    kill: bool,
    aof_redis: RestartableRedis,
    aof_client: redis.Redis,
    redis_client: redis.Redis,
    keys: QueueKeys,
    make_launcher: Callable[..., WorkerLauncher],
    record_property: Callable[[str, Any], None],
) -> None:
    # The tasks count their runs in the session Redis, which is never restarted.
    ledger = Ledger(aof_client, keys, redis_client, f"faults:{keys.queue}")
    launcher = make_launcher(redis_url=aof_redis.url, env={"COROQ_CONCURRENCY": "20"})
    worker = launcher.start()
    seed = random.randrange(2**32)
    producer = Producer(aof_redis.url, queue=keys.queue)
    pusher = Pusher(ledger, producer, random.Random(seed))
    thread = threading.Thread(target=pusher.run, name="pusher")
    thread.start()
    restarts: list[float] = []
    alive_after_each: list[bool] = []
    try:
        for _ in range(scaled(2)):
            time.sleep(PHASE_S)
            restarts.append(aof_redis.restart(kill=kill))
            # Serving again: a batch pushed after the restart gets done.
            pushed = len(pusher.batches)
            wait_for(lambda n=pushed: _done_after(ledger, pusher, n), timeout=60, interval=0.05)
            alive_after_each.append(worker.alive())
        time.sleep(PHASE_S)
    finally:
        pusher.stop.set()
        thread.join(30)
        producer.close()

    classes = classify(pusher.batches, restarts, kill)
    present = _present(ledger)
    arrived = [job_id for job_id in classes["unacknowledged"] if job_id in present]
    window_kept = [job_id for job_id in classes["window"] if job_id in present]
    must_finish = classes["durable"] + window_kept + arrived
    everything_final = ledger.wait_all_final(timeout=timeout_for(90), ids=must_finish)
    after_last_restart = [
        job_id
        for batch in pusher.batches
        if batch.acknowledged_at is not None and batch.acknowledged_at > restarts[-1] + DOWN_FOR_S
        for job_id in batch.ids
    ]
    workers_named = {record.get("worker") for record in ledger.records(after_last_restart).values()}
    worker.terminate()
    exit_code = worker.wait(timeout=30)

    durable = ledger.figures(
        f"redis_restart_{'sigkill' if kill else 'sigterm'}", classes["durable"]
    )
    durable.extra.update(
        seed=seed,
        restarts=len(restarts),
        in_everysec_window=len(classes["window"]),
        window_lost=len(classes["window"]) - len(window_kept),
        unacknowledged=len(classes["unacknowledged"]),
        unacknowledged_arrived=len(arrived),
        redis_unavailable_logged=len(worker.events("redis.unavailable")),
        redis_recovered_logged=len(worker.events("redis.recovered")),
    )
    durable.publish(record_property)

    assert everything_final, (durable.as_dict(), ledger.where_unfinished())
    assert durable.lost == 0, durable.as_dict()
    assert durable.succeeded == durable.jobs, durable.as_dict()
    assert ledger.final_count(window_kept + arrived) == len(window_kept + arrived)
    assert alive_after_each == [True] * len(restarts)
    assert len(launcher.started) == 1, "the worker had to be restarted"
    assert len(worker.events("redis.unavailable")) >= len(restarts)
    assert len(worker.events("redis.recovered")) >= len(restarts)
    assert after_last_restart
    assert workers_named == {worker.worker_id}
    assert exit_code == 0
    assert ledger.leftovers() == {"ready": 0, "delayed": 0, "processing": 0}


def _done_after(ledger: Ledger, pusher: Pusher, first_batch: int) -> bool:
    """Whether some job acknowledged at or after batch `first_batch` has finished."""
    later = [
        job_id
        for batch in pusher.batches[first_batch:]
        if batch.acknowledged_at is not None
        for job_id in batch.ids
    ]
    return bool(later) and ledger.final_count(later[:BATCH]) > 0


def _present(ledger: Ledger) -> set[str]:
    """Ids with a record or an entry in one of the queue's lists."""
    found = {
        key.decode().rsplit(":job:", 1)[1]
        for key in ledger.queue_client.scan_iter(match=ledger.keys.job("*"), count=1000)
    }
    for place in ledger.queued_ids().values():
        found.update(place)
    return found
