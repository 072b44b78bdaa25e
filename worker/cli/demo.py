"""`worker demo`: a worker, a Redis it can reach, and example jobs flowing.

When nothing answers at the configured Redis URL, a private redis-server is started for the
demo (from PATH, or the `coroq[server]` wheel) and removed afterwards.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count
from typing import Any

import redis
import structlog

from producer.client import Producer
from producer.connection import sync_client
from producer.envelope import JobEnvelope, validate_envelope
from worker.local_redis import RedisServerProcess
from worker.process.daemon import ShutdownSummary, Worker
from worker.registry import TaskRegistry
from worker.settings import WorkerSettings

log = structlog.get_logger()

EXAMPLE_TASKS_MODULE = "worker.tasks.examples"
FEED_INTERVAL = 2.0


def redis_answers(url: str) -> bool:
    client = sync_client(url, retries=0, socket_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


@contextmanager
def reachable_redis(settings: WorkerSettings) -> Iterator[WorkerSettings]:
    if redis_answers(settings.redis_url):
        yield settings
        return
    with RedisServerProcess() as server:
        log.info(
            "demo.redis_started",
            reason=f"nothing answered at {settings.redacted_redis_url}",
            redis=server.url,
            binary=server.binary,
        )
        yield settings.model_copy(update={"redis_url": server.url})


def example_jobs(round_number: int) -> list[JobEnvelope]:
    jobs: list[dict[str, Any]] = [
        {"task": "echo", "args": [f"hello #{round_number}"]},
        {"task": "sleep", "args": {"seconds": 0.25}},
        {"task": "examples.word_count", "args": {"text": "to be or not to be"}},
        {"task": "examples.checksum", "args": [f"payload {round_number}"]},
    ]
    if round_number % 5 == 0:
        jobs.append({"task": "examples.divide", "args": [1, 0]})  # lands in the dead list
    return [validate_envelope(job) for job in jobs]


def _feed(producer: Producer, stop: threading.Event) -> None:
    for round_number in count():
        try:
            ids = producer.push_many(example_jobs(round_number))
            log.info("demo.pushed", jobs=len(ids), queue=producer.queue)
        except redis.RedisError as exc:
            log.warning("demo.push_failed", error=str(exc))
        if stop.wait(FEED_INTERVAL):
            return


def _port_taken(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def without_taken_metrics_port(settings: WorkerSettings) -> WorkerSettings:
    """The demo runs beside whatever else is on the machine: a taken metrics port turns the
    endpoints off (with a warning) instead of stopping the demo."""
    if settings.metrics_port and _port_taken(settings.metrics_host, settings.metrics_port):
        log.warning(
            "demo.metrics_off",
            reason=f"port {settings.metrics_port} is in use; set COROQ_METRICS_PORT to another",
        )
        return settings.model_copy(update={"metrics_port": 0})
    return settings


def run_demo(settings: WorkerSettings, duration: float | None) -> ShutdownSummary:
    with reachable_redis(without_taken_metrics_port(settings)) as demo_settings:
        registry = TaskRegistry.from_modules([*demo_settings.tasks, EXAMPLE_TASKS_MODULE])
        worker = Worker(demo_settings, registry)
        stop_feeding = threading.Event()
        producer = Producer(demo_settings.redis_url, queue=demo_settings.queues[0])
        feeder = threading.Thread(target=_feed, args=(producer, stop_feeding), daemon=True)
        timer = None
        if duration is not None:
            timer = threading.Timer(duration, worker.request_shutdown, args=("demo_finished",))
            timer.daemon = True
        try:
            feeder.start()
            if timer is not None:
                timer.start()
            return worker.run()
        finally:
            stop_feeding.set()
            if timer is not None:
                timer.cancel()
            feeder.join(5)
            producer.close()
