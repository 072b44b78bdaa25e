"""The overview: every queue's counts and history, and the live workers, at a bounded cost.

Reading it costs, per read: one SMEMBERS of the worker set, then one pipeline of, per queue,
LLEN (ready, dead), ZCARD (delayed, suspects), EXISTS (paused) and HGETALL (history), and per
worker and queue it serves, GET (heartbeat) and LLEN (its processing list).

Which queues exist, and which queues each worker serves, is found by a SCAN of the queue keys
(the pattern skips the job records; a worker's heartbeat keys say where it works), every
`DISCOVER_EVERY` seconds, or on every read when one SCAN call covers the keyspace. Between two,
a worker that appears is looked for on each known queue once (EXISTS), and a queue a page asks
for is looked for on each worker once. The caller spaces reads by their cost
(`OverviewCache`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis

from producer.connection import is_cluster_client
from producer.history import MinuteCounts, history_of
from producer.keys import QueueKeys, parse_queue_key, queue_keys_pattern, workers_key
from producer.stats import WorkerStats, worker_stats_from_beat

DISCOVER_EVERY = 60.0
# A keyspace one SCAN call covers is looked through on every read: new queues show at once.
CHEAP_DISCOVERY = 1
SCAN_COUNT = 10_000  # fewer round trips over a keyspace of millions of job records


@dataclass(frozen=True, slots=True)
class QueueRow:
    queue: str
    ready: int
    delayed: int
    running: int
    dead: int
    suspects: int
    paused: bool
    workers: int
    history: tuple[MinuteCounts, ...]

    @property
    def finished_last_hour(self) -> int:
        return sum(minute.ok for minute in self.history)

    @property
    def failed_last_hour(self) -> int:
        return sum(minute.failed for minute in self.history)


@dataclass(frozen=True, slots=True)
class Overview:
    taken_at: float
    queues: tuple[QueueRow, ...]
    workers: tuple[WorkerStats, ...]
    commands: int  # what this read cost in Redis commands

    @property
    def history(self) -> tuple[MinuteCounts, ...]:
        """Every queue's history, summed minute by minute."""
        if not self.queues:
            return ()
        columns = zip(*(queue.history for queue in self.queues), strict=True)
        return tuple(
            MinuteCounts(
                minutes[0].minute_start, sum(m.ok for m in minutes), sum(m.failed for m in minutes)
            )
            for minutes in columns
        )

    def queue(self, name: str) -> QueueRow | None:
        return next((row for row in self.queues if row.queue == name), None)


@dataclass
class _Known:
    """What discovery found: the queues, and the queues each worker serves."""

    queues: list[str] = field(default_factory=list)
    served: dict[str, set[str]] = field(default_factory=dict)  # worker -> its queues
    unchecked: set[str] = field(default_factory=set)  # queues added since: whose workers?
    at: float = float("-inf")  # when the last look for queues took place
    cost: int = CHEAP_DISCOVERY + 1  # commands it took


class OverviewReader:
    def __init__(self, client: redis.Redis, prefix: str, only: Sequence[str] = ()) -> None:
        self._client = client
        self._prefix = prefix
        self._only = list(only)
        self._known = _Known()
        self._one_call_each = CHEAP_DISCOVERY  # SCAN calls of a look that covers it all at once
        self._lock = threading.Lock()

    def read(self) -> Overview:
        with self._lock:
            return self._read()

    def known_queues(self) -> list[str]:
        with self._lock:
            if not self._known.queues:
                self._look_for_queues(time.time())
            return list(self._known.queues)

    def include(self, queue: str) -> None:
        """Show this queue from the next read on (a page asked for it), until the next look
        for queues finds no key of it."""
        with self._lock:
            if queue not in self._known.queues:
                self._known.queues = sorted([*self._known.queues, queue])
                self._known.unchecked.add(queue)

    def _read(self) -> Overview:
        now = time.time()
        ids = sorted(_text(member) for member in self._client.smembers(workers_key(self._prefix)))
        commands = 1 + self._discover(ids, now)
        queues = self._known.queues
        keys = {queue: QueueKeys(queue, self._prefix) for queue in queues}
        pairs = [
            (worker, queue)
            for worker in ids
            for queue in sorted(self._known.served.get(worker, ()))
            if queue in keys
        ]
        pipe = self._client.pipeline(transaction=False)
        for queue in queues:
            k = keys[queue]
            pipe.llen(k.ready)
            pipe.zcard(k.delayed)
            pipe.llen(k.dead)
            pipe.zcard(k.suspects)
            pipe.exists(k.paused)
            pipe.hgetall(k.history)
        for worker, queue in pairs:
            pipe.get(keys[queue].worker(worker))
            pipe.llen(keys[queue].processing(worker))
        replies = iter(pipe.execute())
        commands += 6 * len(queues) + 2 * len(pairs)
        counts: dict[str, list[int]] = {}
        history: dict[str, list[MinuteCounts]] = {}
        for queue in queues:
            counts[queue] = [int(next(replies)) for _ in range(5)]
            history[queue] = history_of(next(replies), now=now)
        beats: dict[str, list[bytes]] = {}
        running: dict[str, int] = dict.fromkeys(queues, 0)
        held: dict[str, int] = {}
        serving: dict[str, list[str]] = {}
        for worker, queue in pairs:
            beat, length = next(replies), int(next(replies))
            running[queue] += length
            held[worker] = held.get(worker, 0) + length
            if beat is not None:
                beats.setdefault(worker, []).append(beat)
                serving.setdefault(worker, []).append(queue)
        workers = tuple(
            worker_stats_from_beat(
                worker, tuple(serving[worker]), beats[worker], held.get(worker, 0), now
            )
            for worker in ids
            if worker in beats
        )
        rows = tuple(
            QueueRow(
                queue,
                ready=counts[queue][0],
                delayed=counts[queue][1],
                running=running[queue],
                dead=counts[queue][2],
                suspects=counts[queue][3],
                paused=bool(counts[queue][4]),
                workers=sum(1 for worker in workers if queue in worker.queues),
                history=tuple(history.get(queue, ())),
            )
            for queue in queues
        )
        return Overview(now, rows, workers, commands)

    def _discover(self, worker_ids: list[str], now: float) -> int:
        """Bring the known queues and workers' queues up to date; returns the commands taken."""
        known = self._known
        commands = 0
        if now - known.at >= DISCOVER_EVERY or known.cost <= self._one_call_each:
            commands += self._look_for_queues(now)
            for worker in worker_ids:  # listed, but with no heartbeat anywhere: serves nothing
                known.served.setdefault(worker, set())
        fresh = [worker for worker in worker_ids if worker not in known.served]
        checks = [(worker, queue) for worker in fresh for queue in known.queues]
        checks += [
            (worker, queue)
            for queue in sorted(known.unchecked)
            for worker in worker_ids
            if worker not in fresh
        ]
        known.unchecked.clear()
        if not checks:
            return commands
        pipe = self._client.pipeline(transaction=False)
        for worker, queue in checks:
            pipe.exists(QueueKeys(queue, self._prefix).worker(worker))
        for worker in fresh:
            known.served[worker] = set()
        for (worker, queue), there in zip(checks, pipe.execute(), strict=True):
            if there:
                known.served[worker].add(queue)
        return commands + len(checks)

    def _scan(self, pattern: str) -> tuple[list[bytes | str], int]:
        """Every key matching, and the SCAN calls it took (on a Cluster: on every primary)."""
        if is_cluster_client(self._client):
            found = list(self._client.scan_iter(match=pattern, count=SCAN_COUNT))
            primaries = len(self._client.get_primaries())  # type: ignore[attr-defined]
            self._one_call_each = primaries  # a keyspace one call per node covers is cheap
            return found, primaries + len(found) // SCAN_COUNT
        keys: list[bytes | str] = []
        cursor, calls = 0, 0
        while True:
            cursor, batch = self._client.scan(cursor, match=pattern, count=SCAN_COUNT)
            calls += 1
            keys.extend(batch)
            if cursor == 0:
                return keys, calls

    def _look_for_queues(self, now: float) -> int:
        """SCAN for the queues (all, or those named) and the queues each worker serves."""
        known = self._known
        found: set[str] = set(self._only)
        served: dict[str, set[str]] = {}
        patterns = (
            [QueueKeys(queue, self._prefix).worker("*") for queue in self._only]
            if self._only
            else [queue_keys_pattern(self._prefix)]
        )
        commands = 0
        for pattern in patterns:
            keys, calls = self._scan(pattern)
            commands += calls
            for raw in keys:
                parsed = parse_queue_key(_text(raw), self._prefix)
                if parsed is None:
                    continue
                queue, rest = parsed
                found.add(queue)
                if rest.startswith("worker:"):
                    served.setdefault(rest.removeprefix("worker:"), set()).add(queue)
        known.queues = sorted(found)
        known.served = served
        known.unchecked.clear()
        known.at = now
        known.cost = commands if not self._only else commands // max(len(self._only), 1)
        return commands


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
