"""One queue as a test sees it in Redis: whether work is left, which jobs wait, the records of
the jobs that ran since a moment. Used by the in-process worker of tests (`worker.testing`),
for a queue that only that worker serves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, cast

import orjson
import redis

from producer.keys import QueueKeys, workers_key
from producer.records import decode_record

# At most this many jobs of each place are named when a drain gives up.
NAMED_PER_PLACE = 10


@dataclass(frozen=True, slots=True)
class QueueState:
    """Counts read in one transaction, so that they describe one moment."""

    ready: int
    taken: int  # in the worker's processing list: being started or run
    delayed: int
    next_due_ms: float | None  # the earliest delayed job's due time (the worker's clock)
    settling: int  # ended jobs whose dependents are not settled yet (docs/futures.md)
    limited: int  # limiters with jobs waiting for a permit (docs/scheduling.md)
    suspects: int  # jobs of a lost worker, waiting to run alone (docs/reliability.md)
    paused: bool
    read_at_ms: float

    @property
    def due(self) -> bool:
        return self.next_due_ms is not None and self.next_due_ms <= self.read_at_ms

    @property
    def quiet(self) -> bool:
        """Nothing left that a worker would run now (delayed jobs not due yet aside)."""
        waiting = self.ready or self.taken or self.settling or self.limited or self.suspects
        return not waiting and not self.due


@dataclass(frozen=True, slots=True)
class WaitingJob:
    place: str  # "running", "ready" or "delayed"
    job_id: str
    task: str
    due_in_s: float | None = None  # delayed jobs: seconds until due

    def __str__(self) -> str:
        due = "" if self.due_in_s is None else f", due in {self.due_in_s:.1f} s"
        return f"{self.place}: {self.job_id} (task {self.task}{due})"


class QueueInspector:
    """Reads (and, for tests, nudges) one queue served by one worker id."""

    def __init__(self, client: redis.Redis, keys: QueueKeys, worker_id: str) -> None:
        self.client = client
        self.keys = keys
        self.worker_id = worker_id

    def state(self) -> QueueState:
        keys = self.keys
        pipe = self.client.pipeline(transaction=True)
        pipe.llen(keys.ready)
        pipe.llen(keys.processing(self.worker_id))
        pipe.zcard(keys.delayed)
        pipe.zrange(keys.delayed, 0, 0, withscores=True)
        pipe.scard(keys.settling)
        pipe.hlen(keys.limited)
        pipe.zcard(keys.suspects)
        pipe.exists(keys.paused)
        ready, taken, delayed, first, settling, limited, suspects, paused = pipe.execute()
        return QueueState(
            ready=ready,
            taken=taken,
            delayed=delayed,
            next_due_ms=first[0][1] if first else None,
            settling=settling,
            limited=limited,
            suspects=suspects,
            paused=bool(paused),
            read_at_ms=time.time() * 1000,
        )

    def make_delayed_due(self) -> None:
        """Make every delayed job due now, in the order they were due. `XX` leaves alone a
        job the worker promoted meanwhile."""
        members = cast("list[bytes]", self.client.zrange(self.keys.delayed, 0, -1))
        if members:
            # Scores near the epoch: due whatever the clock, and still in their order.
            ranks = {member: rank for rank, member in enumerate(members)}
            self.client.zadd(self.keys.delayed, ranks, xx=True)

    def waiting_jobs(self) -> list[WaitingJob]:
        """The jobs still in the queue's lists, the next to run first in each place."""
        keys, most = self.keys, NAMED_PER_PLACE
        running = cast(
            "list[bytes]", self.client.lrange(keys.processing(self.worker_id), -most, -1)
        )
        ready = cast("list[bytes]", self.client.lrange(keys.ready, -most, -1))
        delayed = cast(
            "list[tuple[bytes, float]]",
            self.client.zrange(keys.delayed, 0, most - 1, withscores=True),
        )
        now_ms = time.time() * 1000
        found = [_waiting("running", raw) for raw in reversed(running)]
        found += [_waiting("ready", raw) for raw in reversed(ready)]
        found += [_waiting("delayed", raw, (due - now_ms) / 1000) for raw, due in delayed]
        return found

    def records_since(self, server_s: float, local_s: float) -> dict[str, dict[str, Any]]:
        """The records of the jobs that started an attempt since `server_s` (the Redis
        server's clock, which `started_at` follows) or ended since `local_s` (this process's
        clock, which `finished_at` follows: a job rejected before it started). In the order
        they started, then (jobs started together) the order they were pushed."""
        names = list(self.client.scan_iter(match=self.keys.job_pattern, count=1000))
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(name)
        head = len(self.keys.job(""))
        found: list[tuple[float, float, str, dict[str, Any]]] = []
        for name, raw in zip(names, pipe.execute(), strict=True):
            record = decode_record(raw)
            started, finished = record.get("started_at"), record.get("finished_at")
            if (started is not None and started >= server_s) or (
                started is None and finished is not None and finished >= local_s
            ):
                pushed = record.get("enqueued_at", 0.0)
                found.append((started or 0.0, pushed, _text(name)[head:], record))
        found.sort(key=lambda entry: entry[:2])
        return {job_id: record for _, _, job_id, record in found}

    def server_time(self) -> float:
        seconds, microseconds = self.client.time()
        return seconds + microseconds / 1_000_000

    def delete_queue(self) -> int:
        """Delete every key of the queue, and the worker id from the set of workers."""
        deleted = delete_queue_keys(self.client, self.keys)
        self.client.srem(workers_key(self.keys.prefix), self.worker_id)
        return deleted


def delete_queue_keys(client: redis.Redis, keys: QueueKeys) -> int:
    """Delete every key of one queue, leaving the keys of other queues alone (no FLUSHDB on
    a server that others may use). Returns how many keys went."""
    deleted = 0
    batch: list[bytes] = []
    for name in client.scan_iter(match=keys.all_keys_pattern, count=1000):
        batch.append(name)
        if len(batch) == 500:
            deleted += client.unlink(*batch)
            batch.clear()
    if batch:
        deleted += client.unlink(*batch)
    return deleted


def _waiting(place: str, raw: bytes, due_in_s: float | None = None) -> WaitingJob:
    try:
        envelope = orjson.loads(raw)
    except orjson.JSONDecodeError:
        envelope = None
    if not isinstance(envelope, dict):
        return WaitingJob(place, "(not a JSON object)", "?", due_in_s)
    return WaitingJob(
        place, str(envelope.get("id", "(no id)")), str(envelope.get("task", "?")), due_in_s
    )


def _text(name: bytes | str) -> str:
    return name.decode() if isinstance(name, bytes) else name
