"""streaq adapter: the benchmark's jobs as streaq tasks, streaq's enqueue API, its worker CLI.

Runs in `bench/.venvs/streaq` (pins in `bench/peers/streaq.txt`), with this folder on
PYTHONPATH.

    python streaq_peer.py worker         # execs: streaq run streaq_peer:worker
    python streaq_peer.py enqueue --job noop --count 20000

Worker settings: streaq's defaults (prefetch = concurrency) but `concurrency` (default 16) set
to the measurement's cap. Its tasks are registered with `silent=True`, streaq's documented way
to turn off the per-task INFO log lines, so it logs no more than the other systems.
"""

from __future__ import annotations

import time

import anyio
from peer_common import MARKS, SLEEP_S, bench_env, due_times, exec_worker, parse_command, report
from streaq import Worker

ENV = bench_env()
worker = Worker(redis_url=ENV.redis_url, queue_name=ENV.queue, concurrency=ENV.concurrency)


@worker.task(silent=True, name="noop")
async def noop() -> None:
    MARKS.done(time.time())


@worker.task(silent=True, name="sleep50")
async def sleep50() -> None:
    started = time.time()
    await anyio.sleep(SLEEP_S)
    MARKS.done(started)


@worker.task(silent=True, name="latency")
async def latency(pushed_at: float) -> None:
    MARKS.latency(pushed_at)


TASKS = {"noop": noop, "sleep50": sleep50}


async def enqueue(job: str, count: int, interval: float, chunk: int) -> float:
    async with worker:
        begin = time.perf_counter()
        if job == "latency":
            for due in due_times(count, interval):
                await anyio.sleep(max(0.0, due - time.monotonic()))
                await latency.enqueue(time.time())
        else:
            task = TASKS[job]
            for start in range(0, count, chunk):
                size = min(chunk, count - start)
                await worker.enqueue_many([task.enqueue() for _ in range(size)])
        return time.perf_counter() - begin


def main() -> None:
    args = parse_command()
    if args.command == "worker":
        burst = ["--burst"] if args.burst else []
        exec_worker("streaq", ["run", "streaq_peer:worker", *burst])
    seconds = anyio.run(enqueue, args.job, args.count, args.interval, args.chunk)
    report(args.count, seconds)


if __name__ == "__main__":
    main()
