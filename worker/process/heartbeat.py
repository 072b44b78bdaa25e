"""The heartbeat thread: keeps this worker's liveness keys fresh.

One key per queue served (`coroq:{Q}:worker:<id>`, with a TTL), so the recovery script of a
queue can check the owner's liveness inside that queue's slot. It runs in its own thread with
its own connection, never on the event loop: a job that blocks the loop must not make a live
worker look dead, and job code cannot starve it.

After each beat it also writes the counts of the jobs that ended since the last one into each
queue's throughput history (`worker.process.history_writer`): nothing when none did.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable

import orjson
import redis
import structlog

from producer.connection import sync_client
from producer.keys import QueueKeys, workers_key
from producer.scripts import SyncScripts
from worker.jobs.protocol import WORKER_SCRIPTS, QueueProtocol
from worker.jobs.throughput import ThroughputCounter
from worker.process.history_writer import HistoryWriter
from worker.redis_health import RedisHealth, SyncOutages
from worker.settings import WorkerSettings

log = structlog.get_logger()

# The worker adds itself to the set of workers on its first beat, then every this many.
REGISTER_EVERY = 20
# Seconds over which the throughput in the heartbeat is averaged.
THROUGHPUT_WINDOW = 60.0


class HeartbeatThread(threading.Thread):
    def __init__(
        self,
        settings: WorkerSettings,
        health: RedisHealth,
        finished_jobs: Callable[[], int] = lambda: 0,
        permits: Callable[[], dict[str, list[tuple[str, str]]]] = dict,
        throughput: ThroughputCounter | None = None,
    ) -> None:
        super().__init__(name="coroq-heartbeat", daemon=True)
        self._settings = settings
        self._keys = [QueueKeys(queue, settings.prefix) for queue in settings.queues]
        self._stopped = threading.Event()
        self._redis: redis.Redis = sync_client(
            settings.redis_url, retries=0, socket_timeout=settings.heartbeat_interval
        )
        self._health = health
        self._outages = SyncOutages(self._redis, health)
        self._started_at = time.time()
        self._last_beat = float("-inf")
        self._lapsed = False
        self._finished_jobs = finished_jobs
        # Where this worker serves /metrics (its port; None: not served), for `producer stats`,
        # `worker health` and Prometheus discovery. Set before the first beat.
        self.metrics_port: int | None = None
        # The permits of running limited jobs live as long as this worker's liveness.
        self._permits = permits
        lease = settings.heartbeat_ttl
        self._protocols = {
            keys.queue: QueueProtocol(keys, settings.worker_id, settings.result_ttl, lease)
            for keys in self._keys
        }
        self._scripts = SyncScripts(self._redis, WORKER_SCRIPTS)
        self._history = HistoryWriter(
            throughput if throughput is not None else ThroughputCounter(),
            self._protocols,
            self._scripts,
        )
        self._samples: deque[tuple[float, int]] = deque()
        self.beats = 0

    def beat(self) -> None:
        """Refresh every liveness key; warn when one had lapsed (we may have lost our jobs)."""
        worker_id = self._settings.worker_id
        now = time.time()
        value = orjson.dumps(
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started_at": self._started_at,
                "beat_at": now,
                "jobs_per_s": self._throughput(now),
                "metrics_port": self.metrics_port,
            }
        )
        ttl_ms = int(self._settings.heartbeat_ttl * 1000)
        register = self.beats % REGISTER_EVERY == 0 or self._lapsed
        pipe = self._redis.pipeline(transaction=False)
        for keys in self._keys:
            pipe.set(keys.worker(worker_id), value, px=ttl_ms, get=True)
        if register:  # the set only lists workers; once a minute keeps Redis traffic low
            pipe.sadd(workers_key(self._settings.prefix), worker_id)
        previous = pipe.execute()[: len(self._keys)]
        for queue, held in self._permits().items():
            self._scripts.run(self._protocols[queue].renew_permits(held))
        self._lapsed = any(old is None for old in previous)
        if self.beats and self._lapsed:
            log.warning(
                "worker.heartbeat_lapsed",
                worker_id=worker_id,
                detail="other workers may have recovered this worker's jobs; "
                "its outcomes for those jobs will not be recorded",
            )
        self.beats += 1

    def _throughput(self, now: float) -> float:
        """Jobs finished per second over about the last minute (for `producer stats`)."""
        finished = self._finished_jobs()
        self._samples.append((now, finished))
        while len(self._samples) > 2 and now - self._samples[1][0] >= THROUGHPUT_WINDOW:
            self._samples.popleft()
        first_at, first_count = self._samples[0]
        elapsed = now - first_at
        return round((finished - first_count) / elapsed, 3) if elapsed > 0 else 0.0

    def run(self) -> None:
        pause = 0.0  # the first beat at once: consumers wait for it before taking jobs
        while not self._stopped.wait(pause):
            pause = self._settings.heartbeat_interval
            sent = time.monotonic()
            try:
                self.beat()
            except redis.RedisError as exc:
                if not self._outages.failed(exc, where="heartbeat"):
                    log.error("worker.heartbeat_failed", error=f"{type(exc).__name__}: {exc}")
                pause = min(pause, 0.5)  # try again soon: our jobs are at stake
            else:
                self._last_beat = sent
                self._outages.succeeded()
                self._write_history()

    def _write_history(self) -> None:
        """Write the throughput history; a failure is logged and never stops the beats (the
        counts not written go with the next beat)."""
        try:
            self._history.write()
        except redis.RedisError as exc:
            log.warning("worker.history_not_written", error=f"{type(exc).__name__}: {exc}")
        except Exception:  # a bug here must not stop the liveness keys
            log.exception("worker.history_failed")

    def remaining_life(self) -> float:
        """Seconds our liveness keys surely still live (counted from before the last beat
        was sent, so the server's clock can only be later); negative once they may lapse."""
        return self._settings.heartbeat_ttl - (time.monotonic() - self._last_beat)

    def fresh(self) -> bool:
        """Whether taking a job is safe: the keys outlive the next beat.

        A job taken while they may lapse could be recovered by another worker while it runs
        here; so consumers take nothing until a beat has succeeded recently.
        """
        return self.remaining_life() > self._settings.heartbeat_interval

    def holds_nothing(self) -> bool:
        """Whether every processing list of this worker is empty."""
        worker_id = self._settings.worker_id
        return not any(self._redis.exists(keys.processing(worker_id)) for keys in self._keys)

    def stop(self, *, clear: bool) -> None:
        """Stop beating; with `clear`, remove the liveness keys (a clean exit, nothing held)."""
        self._stopped.set()
        if self.is_alive():
            self.join(self._settings.heartbeat_interval + 1)
        if self._health.reachable:  # else no wait on a dead connection at exit
            self._write_history()  # the jobs that ended since the last beat
        if clear:
            try:
                pipe = self._redis.pipeline(transaction=False)
                for keys in self._keys:
                    pipe.delete(keys.worker(self._settings.worker_id))
                pipe.srem(workers_key(self._settings.prefix), self._settings.worker_id)
                pipe.execute()
            except redis.RedisError as exc:
                log.warning("worker.heartbeat_clear_failed", error=str(exc))
        self._redis.close()
