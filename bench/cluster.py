"""Redis Cluster: W1 (no-op jobs) on a three-shard Cluster, one worker per shard, against one
worker on one redis-server (docs/operations.md#redis-cluster).

    python bench/cluster.py [--jobs 20000] [--rounds 3] [--json PATH]

Starts a private redis-server and a private three-shard Cluster (`tests.topologies`). Each
round, on fresh queues: `--jobs` `bench.noop` jobs are pushed into each queue, its ready list
is renamed away while its worker (`python -m worker`, concurrency 100) starts, and once all
are up every list is renamed back at once, so drains that should compete do overlap (started
together, workers still begin up to a second apart). In turn: one queue on the redis-server and
one worker (single); three queues whose hash tags fall on the three shards and three workers
(cluster); one queue on one shard, the next each round, and one worker (cluster, one worker).
A drain runs from the first poll (every 5 ms, to the queue's shard) that finds the ready list
shorter than `--jobs` to the first that finds it and the worker's processing list empty:
jobs/s per process = jobs / that time; the aggregate, 3 x jobs / (last end - first start).

On 2 CPUs, the cluster case runs three workers and three busy redis-servers where the single
case runs one of each: its per-process figure measures that contention as much as the Cluster.
The one-worker case has one worker and one busy redis-server, like the single one: its ratio
isolates what the cluster client costs.

Prints medians and [min - max] over rounds, the goal beside the ratios, and any worker that
exited badly, logged a warning or dead-lettered a job; writes JSON (bench/results/cluster.json).
Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as `python bench/cluster.py`
    sys.path.insert(0, str(REPO_ROOT))

import redis  # noqa: E402

from bench.report_file import write_report  # noqa: E402
from bench.worker_processes import spawn_worker, stop_workers  # noqa: E402
from producer import JobEnvelope, Producer  # noqa: E402
from producer.keys import QueueKeys  # noqa: E402
from tests.topologies import RedisCluster, slot_of  # noqa: E402
from worker.local_redis import RedisServerProcess  # noqa: E402

DEFAULT_JSON = REPO_ROOT / "bench" / "results" / "cluster.json"
GOAL = ">= 0.90 (within 10 %)"
GOAL_OF = ("ratio_per_process_to_single", "ratio_one_worker_to_single")
POLL_S = 0.005
SHARDS = 3
WAIT_S = 120.0  # for the workers to come up, then for the drains: far more than either needs
Shard = tuple[str, int, str]  # host, port, and the queue placed there


class Drain:
    """One queue drained by one worker: its shard's client, and when the drain began and ended."""

    def __init__(self, shard: Shard, jobs: int) -> None:
        host, port, queue = shard
        self.client = redis.Redis(host=host, port=port)
        self.keys = QueueKeys(queue)
        self.worker_id = f"bench-{queue}"  # given to the worker, so its processing list is known
        self.held = f"{self.keys.base}:bench-held"  # same hash tag: RENAME stays in one slot
        self.jobs = jobs
        self.started: float | None = None
        self.ended: float | None = None

    def worker_up(self) -> bool:
        return bool(self.client.exists(self.keys.worker(self.worker_id)))  # its liveness key

    def poll(self) -> bool:
        """Look at the ready and processing lists once; True once both were seen empty."""
        if self.ended is None:
            pipe = self.client.pipeline(transaction=False)
            pipe.llen(self.keys.ready).llen(self.keys.processing(self.worker_id))
            ready, processing = pipe.execute()
            now = time.perf_counter()
            if self.started is None and ready < self.jobs:
                self.started = now
            if self.started is not None and ready == 0 and processing == 0:
                self.ended = now
        return self.ended is not None


def start_worker(url: str, drain: Drain, log: Path) -> subprocess.Popen[bytes]:
    settings = {
        "COROQ_TASKS": "bench.tasks",
        "COROQ_REDIS_URL": url,
        "COROQ_QUEUES": drain.keys.queue,
        "COROQ_WORKER_ID": drain.worker_id,
        "COROQ_CONCURRENCY": "100",
        "COROQ_LOG_LEVEL": "warning",
    }
    return spawn_worker(settings, log)


def wait_until(
    done: Callable[[], bool], workers: list[subprocess.Popen[bytes]], logs: list[Path]
) -> None:
    deadline = time.monotonic() + WAIT_S
    while not done():
        for worker, log in zip(workers, logs, strict=True):
            if worker.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"a worker exited with {worker.returncode}:\n{tail}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the workers did not get there within {WAIT_S} s")
        time.sleep(POLL_S)


def warning_lines(log: Path) -> int:
    levels = (b'"level":"warning"', b'"level":"error"', b'"level":"critical"')
    return sum(1 for line in log.read_bytes().splitlines() if any(lv in line for lv in levels))


def measure(
    url: str, shards: list[Shard], jobs: int, scratch: Path, problems: list[str]
) -> tuple[list[float], float]:
    """Fill each queue and hold its jobs back, start its worker, hand all jobs over once all
    workers are up, poll until all are drained. Returns each worker's jobs/s and the aggregate."""
    drains = [Drain(shard, jobs) for shard in shards]
    for drain in drains:
        with Producer(url, queue=drain.keys.queue) as producer:
            producer.push_many([JobEnvelope(task="bench.noop") for _ in range(jobs)])
        drain.client.rename(drain.keys.ready, drain.held)
    logs = [scratch / f"{drain.worker_id}.log" for drain in drains]
    workers: list[subprocess.Popen[bytes]] = []
    try:
        for drain, log in zip(drains, logs, strict=True):
            workers.append(start_worker(url, drain, log))
        wait_until(lambda: all(drain.worker_up() for drain in drains), workers, logs)
        for drain in drains:  # wakes the worker's blocked pop at once
            drain.client.rename(drain.held, drain.keys.ready)
        wait_until(lambda: all([drain.poll() for drain in drains]), workers, logs)
        for drain, log, code in zip(drains, logs, stop_workers(workers), strict=True):
            dead, warnings = drain.client.llen(drain.keys.dead), warning_lines(log)
            if code != 0 or dead or warnings:
                problems.append(f"{drain.keys.queue}: exit {code}, dead {dead}, warned {warnings}")
    finally:
        stop_workers(workers)  # a no-op once they exited: here for the error paths
        for drain in drains:
            drain.client.close()
    spans = [(drain.started or 0.0, drain.ended or 0.0) for drain in drains]  # all set by now
    first, last = min(start for start, _ in spans), max(end for _, end in spans)
    per_worker = [round(jobs / (end - start), 1) for start, end in spans]
    return per_worker, round(len(spans) * jobs / (last - first), 1)


def queues_on_each_shard(cluster: RedisCluster, tag: str) -> list[Shard]:
    """One fresh queue name per shard: names are tried until each primary has one."""
    found: dict[tuple[str, int], str] = {}
    while len(found) < SHARDS:
        queue = f"cluster-{tag}-{uuid.uuid4().hex[:6]}"
        found.setdefault(cluster.node_for_slot(slot_of(QueueKeys(queue).ready)), queue)
    return [(host, port, queue) for (host, port), queue in sorted(found.items())]


def spread(samples: list[float], digits: int = 1) -> dict[str, float]:
    figures = {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}
    return {name: round(value, digits) for name, value in figures.items()}


def ratios(over: list[float], under: list[float]) -> dict[str, float]:
    return spread([a / b for a, b in zip(over, under, strict=True)], 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per queue")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    load_at_start = os.getloadavg()
    rounds: list[dict[str, Any]] = []
    problems: list[str] = []
    # Entering the contexts starts the servers and leaving them stops them, errors included:
    # calling `.start()` as well would start a second redis-server and leave the first running.
    with (
        tempfile.TemporaryDirectory() as scratch_dir,
        RedisServerProcess() as server,
        RedisCluster() as cluster,
    ):
        scratch = Path(scratch_dir)
        for number in range(args.rounds):
            tag = f"{number}-{uuid.uuid4().hex[:4]}"
            alone = ("127.0.0.1", server.port, f"single-{tag}")
            single, _ = measure(server.url, [alone], args.jobs, scratch, problems)
            shards = queues_on_each_shard(cluster, tag)
            per_process, aggregate = measure(cluster.url, shards, args.jobs, scratch, problems)
            one_shard = queues_on_each_shard(cluster, f"{tag}-one")[number % SHARDS]
            one_worker, _ = measure(cluster.url, [one_shard], args.jobs, scratch, problems)
            rounds.append({
                "single": single[0],
                "cluster_per_process": per_process,
                "cluster_aggregate": aggregate,
                "cluster_one_worker": one_worker[0],
                "one_worker_port": one_shard[1],
            })  # fmt: skip
            print(f"round {number + 1}: {rounds[-1]}", file=sys.stderr)
    single = [r["single"] for r in rounds]
    medians = [statistics.median(r["cluster_per_process"]) for r in rounds]
    slowest = [min(r["cluster_per_process"]) for r in rounds]
    every_worker = [jobs_per_s for r in rounds for jobs_per_s in r["cluster_per_process"]]
    one_worker = [r["cluster_one_worker"] for r in rounds]
    result = {
        "single_jobs_per_s": spread(single),
        "cluster_per_process_jobs_per_s": spread(every_worker),
        "cluster_slowest_process_jobs_per_s": spread(slowest),  # each round's slowest
        "ratio_per_process_to_single": ratios(medians, single),  # each round's median
        "ratio_slowest_to_single": ratios(slowest, single),
        "cluster_aggregate_jobs_per_s": spread([r["cluster_aggregate"] for r in rounds]),
        "cluster_one_worker_jobs_per_s": spread(one_worker),
        "ratio_one_worker_to_single": ratios(one_worker, single),
    }
    for name, value in result.items():
        goal = f"  goal: {GOAL}" if name in GOAL_OF else ""
        print(f"{name:36} {value['median']} [{value['min']} - {value['max']}]{goal}")
    print(f"{'problems':36} {problems or 'none'}")
    write_report(args.json, args, load_at_start, result, problems, rounds, goal=GOAL)


if __name__ == "__main__":
    main()
