"""Celery adapter (Redis broker): the benchmark's jobs as Celery tasks, `apply_async`, and
Celery's worker CLI.

Runs in `bench/.venvs/celery` (pins in `bench/peers/celery.txt`), with this folder on
PYTHONPATH.

    python celery_peer.py worker         # execs: celery -A celery_peer worker --pool threads ...
    python celery_peer.py enqueue --job noop --count 20000

Celery 5 runs plain functions. One worker process with N jobs at once is its `threads` pool
(`--pool threads --concurrency N`): the default `prefork` pool would be N+1 processes, `solo`
runs one job at a time. The prefetch multiplier stays at its default (4), acknowledgement at
its default (early). No result backend is configured (Celery's default), logging at WARNING.
"""

from __future__ import annotations

import os
import time

from celery import Celery
from peer_common import (
    MARKS,
    SLEEP_S,
    bench_env,
    due_times,
    exec_worker,
    parse_command,
    report,
    report_latencies,
)

ENV = bench_env()
# A result backend only for bench/completion.py (BENCH_RESULTS=1): every other measurement
# runs Celery without one, its default.
app = Celery(
    "celery_peer",
    broker=ENV.redis_url,
    backend=ENV.redis_url if os.environ.get("BENCH_RESULTS") == "1" else None,
)
app.conf.update(
    task_default_queue=ENV.queue,
    broker_connection_retry_on_startup=True,
)


@app.task(name="noop")
def noop() -> None:
    MARKS.done(time.time())


@app.task(name="sleep50")
def sleep50() -> None:
    started = time.time()
    time.sleep(SLEEP_S)
    MARKS.done(started)


@app.task(name="latency")
def latency(pushed_at: float) -> None:
    MARKS.latency(pushed_at)


@app.task(name="stamp")
def stamp() -> float:
    return time.time()


TASKS = {"noop": noop, "sleep50": sleep50}


def completion(count: int) -> list[float]:
    """Wait for each result as Celery's users do: `AsyncResult.get()` (Redis backend)."""
    samples = []
    for _ in range(count):
        returned_at = stamp.apply_async().get(timeout=60)
        samples.append((time.time() - returned_at) * 1000)
    return samples


def enqueue(job: str, count: int, interval: float) -> float:
    begin = time.perf_counter()
    if job == "latency":
        for due in due_times(count, interval):
            time.sleep(max(0.0, due - time.monotonic()))
            latency.apply_async((time.time(),))
    else:
        task = TASKS[job]
        for _ in range(count):
            task.apply_async()
    return time.perf_counter() - begin


def main() -> None:
    args = parse_command()
    if args.command == "completion":
        report_latencies(completion(args.count))
        return
    if args.command == "worker":
        exec_worker(
            "celery",
            [
                "-A", "celery_peer", "worker",
                "--pool", "threads",
                "--concurrency", str(ENV.concurrency),
                "--queues", ENV.queue,
                "--loglevel", "WARNING",
            ],
        )  # fmt: skip
    seconds = enqueue(args.job, args.count, args.interval)
    report(args.count, seconds)


if __name__ == "__main__":
    main()
