"""RQ adapter: the benchmark's jobs as RQ functions, RQ's enqueue API, RQ's worker CLI.

Runs in `bench/.venvs/rq` (pins in `bench/peers/rq.txt`), with this folder on PYTHONPATH.

    python rq_peer.py worker             # execs: rq worker --url URL QUEUE (forking worker)
    RQ_WORKER_CLASS=rq.worker.SimpleWorker python rq_peer.py worker   # in-process worker
    python rq_peer.py enqueue --job noop --count 20000

RQ runs plain functions, one job at a time per worker process: its default `Worker` forks a
work horse for each job, `SimpleWorker` runs the job in the worker process itself. The 50 ms job
is a `time.sleep(0.05)`, as RQ users write it. Logging at WARNING (`--logging_level`).
"""

from __future__ import annotations

import time

from peer_common import MARKS, SLEEP_S, bench_env, due_times, exec_worker, parse_command, report
from redis import Redis
from rq import Queue

ENV = bench_env()


def noop() -> None:
    MARKS.done(time.time())


def sleep50() -> None:
    started = time.time()
    time.sleep(SLEEP_S)
    MARKS.done(started)


def latency(pushed_at: float) -> None:
    MARKS.latency(pushed_at)


# By name: run as a script, this module is `__main__`, which RQ's workers cannot import.
MODULE = "rq_peer"


def enqueue(job: str, count: int, interval: float, chunk: int) -> float:
    queue = Queue(ENV.queue, connection=Redis.from_url(ENV.redis_url))
    begin = time.perf_counter()
    if job == "latency":
        for due in due_times(count, interval):
            time.sleep(max(0.0, due - time.monotonic()))
            queue.enqueue(f"{MODULE}.latency", time.time())
    else:
        function = f"{MODULE}.{job}"
        for start in range(0, count, chunk):
            size = min(chunk, count - start)
            with queue.connection.pipeline() as pipe:
                queue.enqueue_many(
                    [Queue.prepare_data(function) for _ in range(size)], pipeline=pipe
                )
                pipe.execute()
    return time.perf_counter() - begin


def main() -> None:
    args = parse_command()
    if args.command == "worker":
        burst = ["--burst"] if args.burst else []
        exec_worker(
            "rq",
            ["worker", "--url", ENV.redis_url, "--logging_level", "WARNING", *burst, ENV.queue],
        )
    seconds = enqueue(args.job, args.count, args.interval, max(args.chunk, 1000))
    report(args.count, seconds)


if __name__ == "__main__":
    main()
