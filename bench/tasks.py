"""The tasks the benchmark's worker runs: `--tasks bench.tasks` (with the repo on PYTHONPATH).

- `bench.noop` does nothing at all (`bench/run.py`, which reads the job records);
- `bench.stamp` and `bench.cancellable` are the jobs of `bench/completion.py`;
- `bench.count`, `bench.sleep50` and `bench.latency` are the jobs of the peer comparison
  (`bench/compare.py`), the same as every peer's: they mark their completion in the
  memory-mapped file named by `BENCH_MARKS` (see `bench/peers/peer_common.py`).
"""

from __future__ import annotations

import asyncio
import os
import time

from bench.peers.peer_common import MARKS, SLEEP_S
from worker import task


@task("bench.noop")
async def noop() -> None:
    """Do nothing: what is measured is the queue's own cost per job."""


@task("bench.count")
async def count() -> None:
    """A no-op that marks its completion (the comparison's W1 job)."""
    MARKS.done(time.time())


@task("bench.sleep50")
async def sleep50() -> None:
    """Await 50 ms, then mark completion (the comparison's W2 job)."""
    started = time.time()
    await asyncio.sleep(SLEEP_S)
    MARKS.done(started)


@task("bench.latency")
async def latency(pushed_at: float) -> None:
    """Store how long after `pushed_at` (epoch s, stamped before the push) this job began."""
    MARKS.latency(pushed_at)


@task("bench.stamp")
async def stamp() -> float:
    """Return the time it ends: the completion benchmark measures from there."""
    return time.time()


@task("bench.cancellable")
async def cancellable(marker: str) -> None:
    """Await an hour; note in the file `BENCH_CANCEL_MARKS` when its cancel arrives."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        seen_at = time.time()  # taken first: the write below is not measured
        with open(os.environ["BENCH_CANCEL_MARKS"], "a") as marks:  # noqa: ASYNC230
            marks.write(f"{marker} {seen_at!r}\n")
        raise
