"""The worker's Prometheus metrics, on a registry of its own (one per `WorkerMetrics`).

| metric                                      | type      | labels                  |
|---------------------------------------------|-----------|-------------------------|
| `coroq_jobs_total`                          | counter   | queue, task, outcome    |
| `coroq_job_duration_seconds`                | histogram | queue, task             |
| `coroq_jobs_in_flight`                      | gauge     |                         |
| `coroq_queue_depth`                         | gauge     | queue, state            |
| `coroq_event_loop_lag_seconds`              | gauge     |                         |
| `coroq_redis_reconnects_total`              | counter   |                         |
| `process_*`, `python_*`                     | (std)     | from prometheus_client  |

`outcome` is one of succeeded, retried, dead, requeued; `state` one of ready, delayed,
processing, dead. Queue depths are the queue's, not this worker's share: several workers
serving one queue report the same numbers (aggregate them with `max by (queue, state)`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import redis.asyncio
import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from producer.keys import QueueKeys

log = structlog.get_logger()

CONTENT_TYPE: Final = CONTENT_TYPE_PLAIN_0_0_4
OUTCOMES: Final = ("succeeded", "retried", "dead", "requeued", "cancelled")
QUEUE_STATES: Final = ("ready", "delayed", "processing", "dead", "suspects")
# What recovery made of a lost worker's job (docs/reliability.md#blame).
RECOVERY_VERDICTS: Final = ("requeued", "suspect", "blamed")
UNKNOWN_TASK: Final = "unknown"
# Most (queue, task, outcome) series whose labelled children are kept for reuse.
SERIES_CACHE_LIMIT: Final = 1024
# From 5 ms to an hour: HTTP calls at the low end, long batch jobs at the top.
DURATION_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class QueueDepths:
    ready: int
    delayed: int
    processing: int
    dead: int
    suspects: int = 0


class WorkerMetrics:
    """Every metric the worker exports; thread-safe, so any thread may report."""

    def __init__(
        self, *, known_tasks: Iterable[str] | None = None, process_metrics: bool = True
    ) -> None:
        # Tasks outside `known_tasks` (a job naming an unregistered task) are counted as
        # "unknown", so a stream of bad payloads cannot create unbounded label values.
        self._known_tasks = frozenset(known_tasks) if known_tasks is not None else None
        self.registry = CollectorRegistry(auto_describe=True)
        if process_metrics:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        self._jobs = Counter(
            "coroq_jobs",
            "Jobs finished by this worker, by outcome "
            "(succeeded, retried, dead, requeued at shutdown).",
            ("queue", "task", "outcome"),
            registry=self.registry,
        )
        self._duration = Histogram(
            "coroq_job_duration_seconds",
            "Time from a job's start to its outcome, per attempt.",
            ("queue", "task"),
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self._in_flight = Gauge(
            "coroq_jobs_in_flight",
            "Jobs this worker has taken from Redis and not finished.",
            registry=self.registry,
        )
        self._depth = Gauge(
            "coroq_queue_depth",
            "Jobs in a queue by state (ready, delayed, processing, dead, suspects), as last read.",
            ("queue", "state"),
            registry=self.registry,
        )
        self._loop_lag = Gauge(
            "coroq_event_loop_lag_seconds",
            "How late the event loop last ran a callback posted to it.",
            registry=self.registry,
        )
        self._recovered = Counter(
            "coroq_jobs_recovered",
            "Jobs this worker took back from lost workers, by verdict: requeued (never "
            "started there), suspect (lost beside others, the loss forgiven), blamed (lost "
            "while running alone).",
            ("queue", "verdict"),
            registry=self.registry,
        )
        self._trials = Counter(
            "coroq_suspect_trials",
            "Groups of suspects this worker ran with nothing else beside them.",
            ("queue",),
            registry=self.registry,
        )
        self._series: dict[tuple[str, str | None, str], tuple[Counter, Histogram]] = {}
        self._reconnects = Counter(
            "coroq_redis_reconnects",
            "Times Redis answered again after being unreachable.",
            registry=self.registry,
        )

    # -- reported by the worker ------------------------------------------------------------

    def job_finished(
        self, queue: str, task: str | None, outcome: str, duration_s: float | None
    ) -> None:
        """Count one outcome; `duration_s` is None for a job that never started (bad input)."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; expected one of {OUTCOMES}")
        counter, histogram = self._job_series(queue, task, outcome)
        counter.inc()
        if duration_s is not None:
            histogram.observe(max(duration_s, 0.0))

    def _job_series(self, queue: str, task: str | None, outcome: str) -> tuple[Counter, Histogram]:
        """The labelled children for one (queue, task, outcome), kept: `labels()` costs more
        than the increment itself, once per job."""
        key = (queue, task, outcome)
        series = self._series.get(key)
        if series is None:
            task_label = self._task_label(task)
            series = (
                self._jobs.labels(queue, task_label, outcome),
                self._duration.labels(queue, task_label),
            )
            # Bounded: the task label is one of the registered tasks or "unknown", but the raw
            # task name is the key, so a stream of bad names must not grow the cache.
            if len(self._series) < SERIES_CACHE_LIMIT:
                self._series[key] = series
        return series

    def set_in_flight_source(self, source: Callable[[], float]) -> None:
        """Read the in-flight count from `source` at every scrape (e.g. `inflight.__len__`)."""
        self._in_flight.set_function(source)

    def set_queue_depths(
        self, queue: str, ready: int, delayed: int, processing: int, dead: int, suspects: int = 0
    ) -> None:
        counts = (ready, delayed, processing, dead, suspects)
        for state, count in zip(QUEUE_STATES, counts, strict=True):
            self._depth.labels(queue, state).set(count)

    def jobs_recovered(self, queue: str, requeued: int, suspects: int, blamed: int) -> None:
        for verdict, count in zip(RECOVERY_VERDICTS, (requeued, suspects, blamed), strict=True):
            if count:
                self._recovered.labels(queue, verdict).inc(count)

    def suspect_trial(self, queue: str) -> None:
        self._trials.labels(queue).inc()

    def set_loop_lag(self, seconds: float) -> None:
        self._loop_lag.set(seconds)

    def set_loop_lag_source(self, source: Callable[[], float]) -> None:
        """Read the loop lag from `source` at every scrape (e.g. the watchdog's latest)."""
        self._loop_lag.set_function(source)

    def redis_reconnect(self) -> None:
        self._reconnects.inc()

    # -- read by Prometheus ----------------------------------------------------------------

    def render(self) -> bytes:
        """Every metric in the Prometheus text format (version 0.0.4)."""
        return generate_latest(self.registry)

    def _task_label(self, task: str | None) -> str:
        if not task or (self._known_tasks is not None and task not in self._known_tasks):
            return UNKNOWN_TASK
        return task


async def read_queue_depths(client: redis.asyncio.Redis, keys: QueueKeys) -> QueueDepths:
    """Count one queue's jobs: LLEN ready and dead, ZCARD delayed, and the LLEN of every
    worker's processing list (found by SCAN, so the cost grows with workers, not jobs)."""
    pipe = client.pipeline(transaction=False)
    pipe.llen(keys.ready)
    pipe.zcard(keys.delayed)
    pipe.llen(keys.dead)
    pipe.zcard(keys.suspects)
    ready, delayed, dead, suspects = await pipe.execute()
    processing_keys = [
        key async for key in client.scan_iter(match=keys.processing_pattern, count=1000)
    ]
    processing = 0
    if processing_keys:
        pipe = client.pipeline(transaction=False)
        for key in processing_keys:
            pipe.llen(key)
        processing = sum(await pipe.execute())
    return QueueDepths(int(ready), int(delayed), int(processing), int(dead), int(suspects))


async def refresh_queue_depths(
    client: redis.asyncio.Redis, keys_list: Sequence[QueueKeys], metrics: WorkerMetrics
) -> dict[str, QueueDepths]:
    """Read every queue's depths once and publish them; returns what it read."""
    found: dict[str, QueueDepths] = {}
    for keys in keys_list:
        depths = await read_queue_depths(client, keys)
        metrics.set_queue_depths(
            keys.queue,
            depths.ready,
            depths.delayed,
            depths.processing,
            depths.dead,
            depths.suspects,
        )
        found[keys.queue] = depths
    return found
