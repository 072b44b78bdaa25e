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

import time

from celery import Celery
from peer_common import MARKS, SLEEP_S, bench_env, due_times, exec_worker, parse_command, report

ENV = bench_env()
app = Celery("celery_peer", broker=ENV.redis_url)
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


TASKS = {"noop": noop, "sleep50": sleep50}


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
