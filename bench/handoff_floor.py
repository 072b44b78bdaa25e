"""The cost of the worker's thread hand-off alone, with no Redis and no work: the ceiling the
design puts on one worker process.

    python bench/handoff_floor.py [--jobs 50000] [--concurrency 100] [--rounds 3]
    python bench/handoff_floor.py --jobs 5000 --concurrency 500 --sleep-ms 50   # W2's shape
    python bench/handoff_floor.py ... --batch 50      # up to 50 jobs handed per wake-up
    python bench/handoff_floor.py ... --loop-only     # no thread: an asyncio.Semaphore

One thread takes a slot from a `threading.BoundedSemaphore`, hands an empty coroutine to an
event loop running in another thread with `asyncio.run_coroutine_threadsafe` (uvloop when
installed), and the future's done-callback gives the slot back: the same steps the worker's
consumer thread and loop thread take for every job (DESIGN §1), minus everything else.
Prints jobs/s and microseconds per job, median of the rounds. With `--sleep-ms`, each job
awaits that long instead of nothing, and the efficiency of W2 (ideal wall / actual, see
docs/performance.md) is printed too: the most any worker built this way can reach there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as `python bench/handoff_floor.py`
    sys.path.insert(0, str(REPO_ROOT))

from worker.process.loop_thread import new_event_loop  # noqa: E402 - the worker's own loop choice


async def job(sleep_s: float) -> None:
    """Does nothing, or only awaits: what is measured is the hand-off."""
    if sleep_s:
        await asyncio.sleep(sleep_s)


def one_round(
    loop: asyncio.AbstractEventLoop, jobs: int, concurrency: int, sleep_s: float = 0.0
) -> float:
    """Seconds to hand `jobs` coroutines to the loop under a cap of `concurrency`."""
    slots = threading.BoundedSemaphore(concurrency)
    finished = threading.Event()
    done = 0

    def job_done(_: Future[Any]) -> None:
        nonlocal done
        slots.release()
        done += 1  # only the loop thread runs this callback
        if done == jobs:
            finished.set()

    begin = time.perf_counter()
    for _ in range(jobs):
        slots.acquire()
        asyncio.run_coroutine_threadsafe(job(sleep_s), loop).add_done_callback(job_done)
    finished.wait()
    return time.perf_counter() - begin


def batched_round(
    loop: asyncio.AbstractEventLoop, jobs: int, concurrency: int, sleep_s: float, batch: int
) -> float:
    """As `one_round`, handing up to `batch` jobs (one per free slot) per wake-up of the loop."""
    slots = threading.BoundedSemaphore(concurrency)
    finished = threading.Event()
    done = 0

    def job_done(_: asyncio.Task[None]) -> None:
        nonlocal done
        slots.release()
        done += 1
        if done == jobs:
            finished.set()

    def start(count: int) -> None:
        for _ in range(count):
            loop.create_task(job(sleep_s)).add_done_callback(job_done)

    begin = time.perf_counter()
    handed = 0
    while handed < jobs:
        slots.acquire()
        count = 1
        while count < min(batch, jobs - handed) and slots.acquire(blocking=False):
            count += 1
        loop.call_soon_threadsafe(start, count)
        handed += count
    finished.wait()
    return time.perf_counter() - begin


def loop_only_round(
    loop: asyncio.AbstractEventLoop, jobs: int, concurrency: int, sleep_s: float
) -> float:
    """No thread: the loop itself starts each job as a task once a slot is free."""

    async def run_all() -> float:
        slots = asyncio.Semaphore(concurrency)
        tasks = []
        begin = time.perf_counter()
        for _ in range(jobs):
            await slots.acquire()
            task = asyncio.create_task(job(sleep_s))
            task.add_done_callback(lambda _: slots.release())
            tasks.append(task)
        await asyncio.gather(*tasks)
        return time.perf_counter() - begin

    return asyncio.run_coroutine_threadsafe(run_all(), loop).result()


def shape(options: argparse.Namespace) -> str:
    if options.loop_only:
        return "loop only, no thread"
    return "one job per hand-off" if options.batch == 1 else f"up to {options.batch} per hand-off"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sleep-ms", type=float, default=0.0, help="each job awaits this long")
    parser.add_argument("--batch", type=int, default=1, help="most jobs handed per wake-up")
    parser.add_argument("--loop-only", action="store_true", help="no thread: the loop alone")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    options = parser.parse_args()
    if options.batch < 1:
        parser.error("--batch must be at least 1")
    sleep_s = options.sleep_ms / 1000
    loop = new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="loop", daemon=True)
    thread.start()
    jobs, cap = options.jobs, options.concurrency
    seconds = []
    for _ in range(options.rounds):
        if options.loop_only:
            seconds.append(loop_only_round(loop, jobs, cap, sleep_s))
        elif options.batch > 1:
            seconds.append(batched_round(loop, jobs, cap, sleep_s, options.batch))
        else:
            seconds.append(one_round(loop, jobs, cap, sleep_s))
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    median = statistics.median(seconds)
    print(
        f"hand-off floor ({type(loop).__module__}, {shape(options)}): "
        f"{options.jobs / median:,.0f} jobs/s, "
        f"{median / options.jobs * 1e6:.1f} us per job (median of {options.rounds} rounds "
        f"of {options.jobs:,} jobs, cap {options.concurrency}; "
        f"range {options.jobs / max(seconds):,.0f}-{options.jobs / min(seconds):,.0f} jobs/s)"
    )
    ideal = math.ceil(options.jobs / options.concurrency) * sleep_s
    if options.json is not None:
        figures = {
            "loop": type(loop).__module__,
            "jobs": options.jobs,
            "concurrency": options.concurrency,
            "sleep_s": sleep_s,
            "shape": shape(options),
            "seconds": seconds,
            "jobs_per_s": options.jobs / median,
            "efficiency": ideal / median if sleep_s else None,
        }
        options.json.write_text(json.dumps(figures))
    if sleep_s:
        print(
            f"efficiency with {options.sleep_ms:g} ms jobs: {ideal / median:.3f} "
            f"(ideal {ideal:.3f} s / actual {median:.3f} s; "
            f"range {ideal / max(seconds):.3f}-{ideal / min(seconds):.3f})"
        )


if __name__ == "__main__":
    main()
