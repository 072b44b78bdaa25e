"""SAQ adapter: the benchmark's jobs as SAQ functions, SAQ's enqueue API, SAQ's worker CLI.

Runs in `bench/.venvs/saq` (pins in `bench/peers/saq.txt`), with this folder on PYTHONPATH.

    python saq_peer.py worker            # execs: saq saq_peer.settings
    python saq_peer.py enqueue --job noop --count 20000

Worker settings: SAQ's defaults but `concurrency` (default 10) set to the measurement's cap.
SAQ's CLI logs errors only by default, so it is left as it is.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

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
from saq import Queue

ENV = bench_env()
queue = Queue.from_url(ENV.redis_url, name=ENV.queue)


async def noop(ctx: dict[str, Any]) -> None:
    MARKS.done(time.time())


async def sleep50(ctx: dict[str, Any]) -> None:
    started = time.time()
    await asyncio.sleep(SLEEP_S)
    MARKS.done(started)


async def latency(ctx: dict[str, Any], *, pushed_at: float) -> None:
    MARKS.latency(pushed_at)


async def stamp(ctx: dict[str, Any]) -> float:
    return time.time()


settings = {
    "queue": queue,
    "functions": [noop, sleep50, latency, stamp],
    "concurrency": ENV.concurrency,
}


async def enqueue(job: str, count: int, interval: float, chunk: int) -> float:
    await queue.connect()
    try:
        begin = time.perf_counter()
        if job == "latency":
            for due in due_times(count, interval):
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                await queue.enqueue("latency", pushed_at=time.time())
        else:
            for start in range(0, count, chunk):
                size = min(chunk, count - start)
                await asyncio.gather(*(queue.enqueue(job) for _ in range(size)))
        return time.perf_counter() - begin
    finally:
        await queue.disconnect()


async def completion(count: int) -> list[float]:
    """Wait for each result as SAQ's users do: `job.refresh(until_complete=...)`."""
    await queue.connect()
    try:
        samples = []
        for _ in range(count):
            job = await queue.enqueue("stamp")
            assert job is not None
            await job.refresh(until_complete=60)
            samples.append((time.time() - float(job.result)) * 1000)
        return samples
    finally:
        await queue.disconnect()


def main() -> None:
    args = parse_command()
    if args.command == "completion":
        report_latencies(asyncio.run(completion(args.count)))
        return
    if args.command == "worker":
        # SAQ's CLI has no burst mode; the driver stops the worker with SIGTERM.
        exec_worker("saq", ["saq_peer.settings"])
    seconds = asyncio.run(enqueue(args.job, args.count, args.interval, args.chunk))
    report(args.count, seconds)


if __name__ == "__main__":
    main()
