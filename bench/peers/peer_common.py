"""What every peer adapter shares. Standard library only: each adapter runs in its peer's own
virtual environment (`bench/.venvs/<peer>/`), where neither coroq nor redis-py may be present.

The driver (`bench/compare.py`) talks to an adapter through its command line and these
environment variables:

| variable | meaning |
|---|---|
| `BENCH_REDIS_URL` | the private Redis of the run |
| `BENCH_QUEUE` | the queue (or stream) name of this measurement, unique per measurement |
| `BENCH_CONCURRENCY` | how many jobs the worker may run at once (where the peer has a knob) |
| `BENCH_MARKS` | the file the jobs mark their completion in (below) |

The jobs are the same for every system, each written in its library's own style:

- `noop`: does nothing but mark its completion;
- `sleep50`: awaits 50 ms (a thread sleeps 50 ms where the library runs plain functions),
  then marks its completion;
- `latency(pushed_at)`: its first statement takes the time; it stores `now - pushed_at` (ms).
  `pushed_at` is stamped just before the enqueue call.

The marks go to a small memory-mapped file (`BENCH_MARKS`), not to Redis: a mark costs a few
microseconds and no round trip, the same for every system, so counting does not perturb what is
measured. Layout (little-endian): the count of marks (u64), the start time of the first job
(f64, epoch s), the time of the latest mark (f64), then one f64 per latency sample. The driver
polls the count to learn "drained"; the throughput window (first job start to last job done) is
taken by the worker's own clock. A process maps the file on its first mark (a forked RQ work
horse maps it anew); marks are serialised by a lock (thread pools) and `flock` (several worker
processes on one file).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import mmap
import os
import struct
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

JOBS = ("noop", "sleep50", "latency")
SLEEP_S = 0.05


@dataclass(frozen=True, slots=True)
class BenchEnv:
    redis_url: str
    queue: str
    concurrency: int
    marks: str


def bench_env() -> BenchEnv:
    """The measurement's settings; defaults only so that a bare import works."""
    return BenchEnv(
        redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
        queue=os.environ.get("BENCH_QUEUE", "bench"),
        concurrency=int(os.environ.get("BENCH_CONCURRENCY", "100")),
        marks=os.environ.get("BENCH_MARKS", ""),
    )


HEADER = struct.Struct("<Qdd")
SAMPLE = struct.Struct("<d")


def marks_size(samples: int) -> int:
    return HEADER.size + SAMPLE.size * samples


class Marks:
    """This process's view of the marks file (see the module's docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = -1
        self._file: BinaryIO | None = None
        self._map: mmap.mmap | None = None

    @contextmanager
    def _locked(self) -> Iterator[mmap.mmap]:
        """The mapped file, held by this thread (a lock) and this process (`flock`: several
        worker processes may share one file)."""
        with self._lock:
            if self._file is None or self._map is None or self._pid != os.getpid():
                self._file = open(os.environ["BENCH_MARKS"], "r+b")  # noqa: SIM115 - kept open
                self._map = mmap.mmap(self._file.fileno(), 0)
                self._pid = os.getpid()
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
            try:
                yield self._map
            finally:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)

    def done(self, started: float) -> None:
        """One job is done; `started` is when it began (epoch s)."""
        with self._locked() as view:
            count, first, _ = HEADER.unpack_from(view)
            HEADER.pack_into(view, 0, count + 1, started if count == 0 else first, time.time())

    def latency(self, pushed_at: float) -> None:
        """Store now - `pushed_at` (ms) as the next sample; call it first thing in the job."""
        waited_ms = (time.time() - pushed_at) * 1000
        with self._locked() as view:
            count, first, _ = HEADER.unpack_from(view)
            offset = HEADER.size + SAMPLE.size * count
            if offset + SAMPLE.size <= len(view):
                SAMPLE.pack_into(view, offset, waited_ms)
            HEADER.pack_into(view, 0, count + 1, first, time.time())


MARKS = Marks()


def parse_command(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="a peer adapter of the coroq benchmark")
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="exec the peer's own worker command")
    worker.add_argument("--burst", action="store_true", help="exit once the queue is empty")
    enqueue = commands.add_parser("enqueue", help="enqueue jobs with the peer's own API")
    enqueue.add_argument("--job", choices=JOBS, default="noop")
    enqueue.add_argument("--count", type=int, required=True)
    enqueue.add_argument(
        "--interval",
        type=float,
        default=0.0,
        help="seconds between enqueues (0: as fast as it can)",
    )
    enqueue.add_argument("--chunk", type=int, default=100, help="jobs in flight at once (async)")
    completion = commands.add_parser(
        "completion",
        help="bench/completion.py: enqueue `stamp` jobs one at a time and wait for each result "
        "with the peer's own API; print the latencies",
    )
    completion.add_argument("--count", type=int, required=True)
    return parser.parse_args(argv)


def report_latencies(samples: list[float]) -> None:
    """Completion latencies (ms: the moment the result is in hand minus the time the job
    returned), one JSON line on stdout for the driver."""
    print(json.dumps({"samples": samples}), flush=True)


def due_times(count: int, interval: float) -> Iterator[float]:
    """Monotonic times on a fixed schedule, one every `interval` s from now."""
    begin = time.monotonic()
    for index in range(count):
        yield begin + index * interval


def report(count: int, seconds: float) -> None:
    """The enqueue's own timing, one JSON line on stdout for the driver."""
    print(json.dumps({"count": count, "seconds": seconds}), flush=True)


def exec_worker(script: str, args: list[str]) -> None:
    """Replace this process with the peer's console script (same PID, so the driver measures
    the peer's own worker process)."""
    path = os.path.join(os.path.dirname(sys.executable), script)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(path, [path, *args])  # noqa: S606 - an argument list, no shell
