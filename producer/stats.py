"""`producer stats`: what is in the queues and who is working on them, read from Redis.

One snapshot costs: one SCAN for the queue keys (ready, delayed, dead, paused, processing,
worker; never the job records), one pipeline of LLEN/ZCARD/EXISTS, SMEMBERS of the worker set
and one
pipeline of GETs of the heartbeats.

Throughput is jobs finished per second over about the last minute, as reported by each live
worker's heartbeat: every worker counts the jobs it finished (succeeded or dead) and writes the
rate into its heartbeat value as `jobs_per_s`; the snapshot's `throughput_per_s` is the sum over
the live workers that report one (None when none does, e.g. only older workers). It cannot be
split per queue, since one worker may serve several queues.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeGuard

import orjson
import redis

from producer.keys import (
    DEFAULT_PREFIX,
    QueueKeys,
    parse_queue_key,
    queue_keys_pattern,
    validate_prefix,
    workers_key,
)

SCAN_COUNT = 1000


@dataclass(frozen=True, slots=True)
class QueueStats:
    queue: str
    ready: int
    delayed: int
    processing: int
    dead: int
    workers: int
    # Jobs that were running on a worker that died, waiting to run again in small groups
    # (docs/reliability.md#blame).
    suspects: int = 0
    paused: bool = False  # workers take nothing from it (docs/scheduling.md#pause)


@dataclass(frozen=True, slots=True)
class WorkerStats:
    worker_id: str
    queues: tuple[str, ...]
    host: str | None
    pid: int | None
    started_at: float | None
    beat_at: float | None
    heartbeat_age_s: float | None
    in_flight: int
    jobs_per_s: float | None = None
    metrics_port: int | None = None  # where it serves /metrics on its host (None: nowhere)


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    taken_at: float
    queues: tuple[QueueStats, ...]
    workers: tuple[WorkerStats, ...]

    @property
    def in_flight(self) -> int:
        return sum(queue.processing for queue in self.queues)

    @property
    def throughput_per_s(self) -> float | None:
        """Jobs finished per second over about the last minute, as reported by each live
        worker's heartbeat: their sum, or None when no live worker reports one."""
        rates = [worker.jobs_per_s for worker in self.workers if worker.jobs_per_s is not None]
        if not rates:
            return None
        return round(sum(rates), 3)

    def to_dict(self) -> dict[str, Any]:
        return {
            "taken_at": self.taken_at,
            "in_flight": self.in_flight,
            "throughput_per_s": self.throughput_per_s,
            "queues": [asdict(queue) for queue in self.queues],
            "workers": [
                {**asdict(worker), "queues": list(worker.queues)} for worker in self.workers
            ],
        }


class StatsReader:
    """Reads snapshots of the queues of one key prefix (all of them, or those named)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        queues: Sequence[str] | None = None,
    ) -> None:
        self._client = client
        self._prefix = validate_prefix(prefix)
        self._only = [QueueKeys(queue, prefix) for queue in queues] if queues else None

    def snapshot(self, now: float | None = None) -> StatsSnapshot:
        found = self._scan_queue_keys()
        queue_names = sorted(found) if self._only is None else [k.queue for k in self._only]
        keys_list = [QueueKeys(queue, self._prefix) for queue in queue_names]
        processing = {queue: found.get(queue, []) for queue in queue_names}
        counts, suspects, paused, held = self._counts(keys_list, processing)
        taken_at = time.time() if now is None else now
        workers = self._live_workers(keys_list, held, taken_at)
        queues = tuple(
            QueueStats(
                keys.queue,
                *counts[keys.queue],
                workers=sum(1 for worker in workers if keys.queue in worker.queues),
                suspects=suspects[keys.queue],
                paused=paused[keys.queue],
            )
            for keys in keys_list
        )
        return StatsSnapshot(taken_at, queues, tuple(workers))

    def _scan_queue_keys(self) -> dict[str, list[str]]:
        """queue -> its processing lists; every queue with any key of its own is present."""
        found: dict[str, list[str]] = defaultdict(list)
        patterns = (
            [keys.processing_pattern for keys in self._only]
            if self._only is not None
            else [queue_keys_pattern(self._prefix)]
        )
        for pattern in patterns:
            for raw in self._client.scan_iter(match=pattern, count=SCAN_COUNT):
                key = raw.decode() if isinstance(raw, bytes) else str(raw)
                parsed = parse_queue_key(key, self._prefix)
                if parsed is None:
                    continue
                queue, rest = parsed
                entry = found[queue]
                if rest.startswith("processing:"):
                    entry.append(key)
        return dict(found)

    def _counts(
        self, keys_list: Sequence[QueueKeys], processing: dict[str, list[str]]
    ) -> tuple[
        dict[str, tuple[int, int, int, int]], dict[str, int], dict[str, bool], dict[str, int]
    ]:
        """(queue -> (ready, delayed, processing, dead), queue -> suspects, queue -> paused,
        worker id -> jobs it holds)."""
        pipe = self._client.pipeline(transaction=False)
        for keys in keys_list:
            pipe.llen(keys.ready)
            pipe.zcard(keys.delayed)
            pipe.llen(keys.dead)
            pipe.zcard(keys.suspects)
            pipe.exists(keys.paused)
            for key in processing[keys.queue]:
                pipe.llen(key)
        replies = iter(pipe.execute())
        counts = {}
        suspects = {}
        paused = {}
        held: dict[str, int] = defaultdict(int)
        for keys in keys_list:
            ready, delayed, dead = next(replies), next(replies), next(replies)
            suspects[keys.queue] = int(next(replies))
            paused[keys.queue] = bool(next(replies))
            in_queue = 0
            for key in processing[keys.queue]:
                length = int(next(replies))
                held[key.removeprefix(keys.processing(""))] += length
                in_queue += length
            counts[keys.queue] = (int(ready), int(delayed), in_queue, int(dead))
        return counts, suspects, paused, dict(held)

    def _live_workers(
        self, keys_list: Sequence[QueueKeys], held: dict[str, int], now: float
    ) -> list[WorkerStats]:
        """Workers of the worker set with a heartbeat on at least one of these queues."""
        ids = sorted(
            member.decode() if isinstance(member, bytes) else str(member)
            for member in self._client.smembers(workers_key(self._prefix))
        )
        if not ids or not keys_list:
            return []
        pipe = self._client.pipeline(transaction=False)
        for worker_id in ids:
            for keys in keys_list:
                pipe.get(keys.worker(worker_id))
        replies = iter(pipe.execute())
        workers = []
        for worker_id in ids:
            beats = {keys.queue: next(replies) for keys in keys_list}
            served = tuple(queue for queue, beat in beats.items() if beat is not None)
            if served:
                found = (beat for beat in beats.values() if beat is not None)
                held_here = held.get(worker_id, 0)
                workers.append(worker_stats_from_beat(worker_id, served, found, held_here, now))
        return workers


def worker_stats_from_beat(
    worker_id: str, queues: tuple[str, ...], beats: Iterable[bytes], in_flight: int, now: float
) -> WorkerStats:
    """A worker as its heartbeats on these queues describe it (the freshest one wins)."""
    return _worker_stats(worker_id, queues, _freshest(beats), in_flight, now)


def _freshest(beats: Iterable[bytes]) -> dict[str, Any]:
    best: dict[str, Any] = {}
    for beat in beats:
        try:
            value = orjson.loads(beat)
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, dict) and _float(value.get("beat_at")) >= _float(best.get("beat_at")):
            best = value
    return best


def _worker_stats(
    worker_id: str, queues: tuple[str, ...], info: dict[str, Any], in_flight: int, now: float
) -> WorkerStats:
    beat_at = info.get("beat_at")
    beat = float(beat_at) if isinstance(beat_at, int | float) else None
    started = info.get("started_at")
    pid = info.get("pid")
    host = info.get("host")
    rate = info.get("jobs_per_s")
    port = info.get("metrics_port")
    return WorkerStats(
        worker_id=worker_id,
        queues=queues,
        host=str(host) if host is not None else None,
        pid=pid if isinstance(pid, int) else None,
        started_at=float(started) if isinstance(started, int | float) else None,
        beat_at=beat,
        heartbeat_age_s=round(max(now - beat, 0.0), 3) if beat is not None else None,
        in_flight=in_flight,
        jobs_per_s=float(rate) if _is_number(rate) and rate >= 0 else None,
        metrics_port=port if isinstance(port, int) and 0 < port < 65536 else None,
    )


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _float(value: object, default: float = float("-inf")) -> float:
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
