"""The cost of the worker's thread hand-off alone, with no Redis and no work: the ceiling the
design puts on one worker process.

    python bench/handoff_floor.py [--jobs 50000] [--concurrency 100] [--rounds 3]

One thread takes a slot from a `threading.BoundedSemaphore`, hands an empty coroutine to an
event loop running in another thread with `asyncio.run_coroutine_threadsafe` (uvloop when
installed), and the future's done-callback gives the slot back: the same steps the worker's
consumer thread and loop thread take for every job (DESIGN §1), minus everything else.
Prints jobs/s and microseconds per job, median of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
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

from worker.loop_thread import new_event_loop  # noqa: E402 - the worker's own loop choice


async def empty_job() -> None:
    """Does nothing: what is measured is the hand-off."""


def one_round(loop: asyncio.AbstractEventLoop, jobs: int, concurrency: int) -> float:
    """Seconds to hand `jobs` empty coroutines to the loop under a cap of `concurrency`."""
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
        asyncio.run_coroutine_threadsafe(empty_job(), loop).add_done_callback(job_done)
    finished.wait()
    return time.perf_counter() - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    loop = new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="loop", daemon=True)
    thread.start()
    seconds = [one_round(loop, options.jobs, options.concurrency) for _ in range(options.rounds)]
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    median = statistics.median(seconds)
    print(
        f"hand-off floor ({type(loop).__module__}): {options.jobs / median:,.0f} jobs/s, "
        f"{median / options.jobs * 1e6:.1f} us per job (median of {options.rounds} rounds "
        f"of {options.jobs:,} jobs, cap {options.concurrency}; "
        f"range {options.jobs / max(seconds):,.0f}-{options.jobs / min(seconds):,.0f} jobs/s)"
    )


if __name__ == "__main__":
    main()
