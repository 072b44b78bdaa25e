"""arq adapter: the benchmark's jobs as arq functions, arq's enqueue API, arq's worker CLI.

Runs in `bench/.venvs/arq` (pins in `bench/peers/arq.txt`), with this folder on PYTHONPATH.

    python arq_peer.py worker            # execs: arq arq_peer.WorkerSettings
    python arq_peer.py enqueue --job noop --count 20000

Worker settings: arq's defaults but `max_jobs` (its concurrency cap, default 10) set to the
measurement's cap, and logging at WARNING like every other system (arq logs each job at INFO
by default). The poll delay stays at arq's default (0.5 s): arq polls its queue (a sorted set)
rather than blocking on it, and that is how its users run it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
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


async def noop(ctx: dict[str, Any]) -> None:
    MARKS.done(time.time())


async def sleep50(ctx: dict[str, Any]) -> None:
    started = time.time()
    await asyncio.sleep(SLEEP_S)
    MARKS.done(started)


async def latency(ctx: dict[str, Any], pushed_at: float) -> None:
    MARKS.latency(pushed_at)


async def stamp(ctx: dict[str, Any]) -> float:
    return time.time()


class WorkerSettings:
    functions = (noop, sleep50, latency, stamp)
    redis_settings = RedisSettings.from_dsn(ENV.redis_url)
    queue_name = ENV.queue
    max_jobs = ENV.concurrency


LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"level": "WARNING", "class": "logging.StreamHandler"}},
    "loggers": {"arq": {"handlers": ["stderr"], "level": "WARNING"}},
}


async def enqueue(job: str, count: int, interval: float, chunk: int) -> float:
    pool = await create_pool(WorkerSettings.redis_settings, default_queue_name=ENV.queue)
    try:
        begin = time.perf_counter()
        if job == "latency":
            for due in due_times(count, interval):
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                await pool.enqueue_job("latency", time.time())
        else:
            for start in range(0, count, chunk):
                size = min(chunk, count - start)
                await asyncio.gather(*(pool.enqueue_job(job) for _ in range(size)))
        return time.perf_counter() - begin
    finally:
        await pool.aclose()


async def completion(count: int) -> list[float]:
    """Wait for each result as arq's users do: `await job.result()` (it polls every 0.5 s)."""
    pool = await create_pool(WorkerSettings.redis_settings, default_queue_name=ENV.queue)
    try:
        samples = []
        for _ in range(count):
            job = await pool.enqueue_job("stamp")
            assert job is not None
            returned_at = await job.result(timeout=60)
            samples.append((time.time() - returned_at) * 1000)
        return samples
    finally:
        await pool.aclose()


def main() -> None:
    args = parse_command()
    if args.command == "completion":
        report_latencies(asyncio.run(completion(args.count)))
        return
    if args.command == "worker":
        burst = ["--burst"] if args.burst else []
        exec_worker(
            "arq", ["arq_peer.WorkerSettings", "--custom-log-dict", "arq_peer.LOG_CONFIG", *burst]
        )
    seconds = asyncio.run(enqueue(args.job, args.count, args.interval, args.chunk))
    report(args.count, seconds)


if __name__ == "__main__":
    main()
