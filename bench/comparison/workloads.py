"""The workloads: each function measures one system once and returns an `Outcome`.

W1 throughput, the BRPOP floor and the redis-benchmark ceiling, W2 async I/O, W3 latency,
W4 idle cost, W5 memory under a 1,000,000-job backlog, push, and scale (coroq on 2 processes).
What each measures, and how, is in docs/performance.md.
"""

from __future__ import annotations

import csv
import functools
import itertools
import math
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis

from bench.comparison.processes import (
    Child,
    MarksFile,
    MeasureError,
    RssSampler,
    run_to_end,
    running,
    stop,
    tree_cpu_seconds,
    wait_count,
    wait_exit,
)
from bench.comparison.systems import (
    COROQ_TASKS,
    REPO_ROOT,
    Launcher,
    System,
    enqueue_coroq,
    prefill_coroq_raw,
)
from producer import Producer
from producer.envelope import build_envelope
from producer.keys import QueueKeys

BRPOP_LOOP = REPO_ROOT / "bench" / "brpop_loop.py"
HANDOFF_FLOOR = REPO_ROOT / "bench" / "handoff_floor.py"
WARMUP_JOBS = 5
SLEEP_S = 0.05
BURST_EXIT_S = 20.0
# After the last mark, before SIGTERM: lets a worker finish the bookkeeping of its last jobs
# (arq, stopped while it writes a result, exits 1 with a CancelledError).
SETTLE_S = 0.5


@dataclass(frozen=True, slots=True)
class Sizes:
    w1_jobs: int
    w2_jobs: int
    w2_cap: int
    w3_jobs: int
    w3_interval_s: float
    w4_seconds: float
    w4_settle_s: float
    w5_backlog: int
    w5_seconds: float
    push_jobs: int
    scale_jobs: int
    redis_benchmark_requests: int
    concurrency: int = 100


FULL = Sizes(
    w1_jobs=20_000,
    w2_jobs=5_000,
    w2_cap=500,
    w3_jobs=1_000,
    w3_interval_s=0.010,
    w4_seconds=10.0,
    w4_settle_s=2.0,
    w5_backlog=1_000_000,
    w5_seconds=10.0,
    push_jobs=100_000,
    scale_jobs=20_000,
    redis_benchmark_requests=200_000,
)
QUICK = Sizes(
    w1_jobs=500,
    w2_jobs=500,
    w2_cap=500,
    w3_jobs=100,
    w3_interval_s=0.010,
    w4_seconds=2.0,
    w4_settle_s=0.5,
    w5_backlog=20_000,
    w5_seconds=2.0,
    push_jobs=2_000,
    scale_jobs=500,
    redis_benchmark_requests=20_000,
)


@dataclass
class Outcome:
    """One measurement: its figures, anything else worth keeping, and what went wrong."""

    metrics: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "extra": self.extra, "problems": self.problems}


@dataclass
class Bench:
    url: str
    port: int
    client: redis.Redis
    launcher: Launcher
    workdir: Path
    sizes: Sizes
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def fresh(self, kind: str, system: str, samples: int = 0) -> tuple[str, MarksFile, Path]:
        """A unique queue name, an empty marks file and a log path for one measurement."""
        number = next(self._ids)
        queue = f"bench-{kind}-{system}-{number}"
        marks = MarksFile(self.workdir / f"{queue}.marks", samples)
        return queue, marks, self.workdir / f"{queue}.log"

    def reset(self) -> None:
        """Empty the private server between measurements (nothing else uses it)."""
        self.client.flushall()


def _exit_problems(system: System, child: Child, code: int | None) -> list[str]:
    if code is None:
        return [f"{system.name}: the worker had to be killed\n{child.log_tail()}"]
    if code != 0:
        return [f"{system.name}: the worker exited with {code}\n{child.log_tail()}"]
    return []


def _finish(system: System, child: Child, burst: bool) -> list[str]:
    """Stop a worker (a `--burst` coroq worker exits by itself) and report a bad exit."""
    if burst:
        code = wait_exit(child, BURST_EXIT_S)
        if code is None:
            stop(child)
            return [f"{system.name}: the --burst worker did not exit after the queue drained"]
        return _exit_problems(system, child, code)
    time.sleep(SETTLE_S)
    return _exit_problems(system, child, stop(child))


def rate(amount: float, seconds: float) -> float:
    """`amount` per second; NaN (left out of the medians) when no time was measured."""
    return amount / seconds if seconds > 0 else math.nan


@dataclass
class Drain:
    jobs: int
    seconds: float
    startup_s: float
    rss_peak_mb: float
    enqueue_per_s: float
    problems: list[str]


def drain(bench: Bench, system: System, kind: str, job: str, jobs: int, cap: int) -> Drain:
    """Pre-fill `jobs`, start one worker, wait until every job has marked its completion."""
    queue, marks, log = bench.fresh(kind, system.name)
    enqueued = bench.launcher.enqueue(system, queue, job, jobs, marks=marks.path)
    burst = system.is_coroq
    args = bench.launcher.worker_args(system, queue, cap, burst=burst)
    env = bench.launcher.env(system, queue, cap, marks.path)
    sampler = functools.partial(RssSampler, children=system.forks)
    with running(args, env, bench.workdir, log) as child, sampler(child.pid) as rss:
        wait_count(lambda: marks.count, jobs, [child], what=f"{kind} {system.name}")
        problems = _finish(system, child, burst)
    count, first, last = marks.header()
    if count != jobs:
        problems.append(f"{system.name}: {count} completions for {jobs} jobs")
    return Drain(
        jobs=jobs,
        seconds=last - first,
        startup_s=first - child.spawned_at,
        rss_peak_mb=rss.peak_mb(),
        enqueue_per_s=rate(enqueued.count, enqueued.seconds),
        problems=problems,
    )


# -- W1, the floor and the ceiling ------------------------------------------------------------


def w1(bench: Bench, system: System) -> Outcome:
    jobs = min(bench.sizes.w1_jobs, system.w1_jobs or bench.sizes.w1_jobs)
    result = drain(bench, system, "w1", "noop", jobs, bench.sizes.concurrency)
    return Outcome(
        metrics={
            "jobs_per_s": rate(result.jobs, result.seconds),
            "rss_peak_mb": result.rss_peak_mb,
            "enqueue_per_s": result.enqueue_per_s,
            "startup_s": result.startup_s,
        },
        extra={"jobs": jobs, "seconds": result.seconds, "concurrency": bench.sizes.concurrency},
        problems=result.problems,
    )


def brpop_floor(bench: Bench) -> Outcome:
    """A bare redis-py + hiredis BRPOP + orjson loop in one process (bench/brpop_loop.py)."""
    jobs = bench.sizes.w1_jobs
    queue, _, log = bench.fresh("floor", "brpop")
    with Producer(bench.url, queue=queue) as producer:
        producer.push_many([build_envelope(COROQ_TASKS["noop"], (), {}) for _ in range(jobs)])
        key = producer.keys_for(None).ready
    out = bench.workdir / f"{queue}.json"
    args = [sys.executable, str(BRPOP_LOOP), bench.url, key, str(jobs), str(out)]
    code, _, _ = run_to_end(args, bench.launcher.coroq_env(), bench.workdir, log, 120 + jobs / 500)
    if not out.exists():
        raise MeasureError(f"the BRPOP loop wrote no result (exit code {code})")
    result = orjson.loads(out.read_bytes())
    seconds = result["last_done_at"] - result["first_received_at"]
    problems = [] if code == 0 and result["hiredis"] else [f"BRPOP loop: exit {code}, {result}"]
    return Outcome({"jobs_per_s": rate(result["taken"], seconds)}, {"jobs": jobs}, problems)


def redis_benchmark(bench: Bench) -> dict[str, Outcome]:
    """The server's ceiling: `redis-benchmark -t lpush,rpop -P 1` (50 clients, its default)."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return {}
    requests = bench.sizes.redis_benchmark_requests
    args = [binary, "-h", "127.0.0.1", "-p", str(bench.port), "-t", "lpush,rpop"]
    args += ["-n", str(requests), "-P", "1", "-q", "--csv"]
    _, _, log = bench.fresh("ceiling", "redis-benchmark")
    code, _, out = run_to_end(args, bench.launcher.coroq_env(), bench.workdir, log, 300)
    if code != 0:
        raise MeasureError(f"redis-benchmark exited with {code}")
    rows = {row[0].upper(): row for row in csv.reader(out.splitlines()) if len(row) > 1}
    outcomes = {}
    for test in ("LPUSH", "RPOP"):
        if test in rows:
            extra = {"requests": requests, "clients": 50, "pipeline": 1, "csv": rows[test]}
            outcomes[f"redis-benchmark-{test.lower()}"] = Outcome(
                {"jobs_per_s": float(rows[test][1])}, extra
            )
    return outcomes


# -- W2: async I/O ----------------------------------------------------------------------------


def w2(bench: Bench, system: System) -> Outcome:
    jobs = min(bench.sizes.w2_jobs, system.w2_jobs or bench.sizes.w2_jobs)
    cap = bench.sizes.w2_cap
    result = drain(bench, system, "w2", "sleep50", jobs, cap)
    ideal = math.ceil(jobs / cap) * SLEEP_S
    return Outcome(
        metrics={"efficiency": rate(ideal, result.seconds), "seconds": result.seconds},
        extra={"jobs": jobs, "cap": cap, "ideal_s": ideal, "rss_peak_mb": result.rss_peak_mb},
        problems=result.problems,
    )


def handoff_floor_w2(bench: Bench) -> Outcome:
    """W2's jobs on the bare hand-off of one process (bench/handoff_floor.py): a thread taking
    slots and handing each coroutine to a loop thread, no Redis, no decoding, no records. The
    most a worker built this way (coroq's design) can reach."""
    jobs, cap = bench.sizes.w2_jobs, bench.sizes.w2_cap
    _, _, log = bench.fresh("floor", "handoff")
    out = bench.workdir / "handoff-floor-w2.json"
    args = [sys.executable, str(HANDOFF_FLOOR), "--jobs", str(jobs), "--concurrency", str(cap)]
    args += ["--sleep-ms", str(SLEEP_S * 1000), "--rounds", "1", "--json", str(out)]
    code, _, _ = run_to_end(args, bench.launcher.coroq_env(), bench.workdir, log, 300)
    if code != 0 or not out.exists():
        raise MeasureError(f"the hand-off floor exited with {code}; see {log}")
    result = orjson.loads(out.read_bytes())
    seconds = result["seconds"][0]
    metrics = {"efficiency": result["efficiency"], "seconds": seconds}
    return Outcome(metrics, {"jobs": jobs, "cap": cap, "loop": result["loop"]})


# -- W3: latency ------------------------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (a value that was actually observed)."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


def w3(bench: Bench, system: System) -> Outcome:
    jobs = bench.sizes.w3_jobs
    interval = bench.sizes.w3_interval_s
    queue, marks, log = bench.fresh("w3", system.name, samples=WARMUP_JOBS + jobs)
    cap = bench.sizes.concurrency
    args = bench.launcher.worker_args(system, queue, cap)
    env = bench.launcher.env(system, queue, cap, marks.path)
    launcher = bench.launcher
    with running(args, env, bench.workdir, log) as child:
        launcher.enqueue(system, queue, "latency", WARMUP_JOBS, interval=interval, marks=marks.path)
        wait_count(lambda: marks.count, WARMUP_JOBS, [child], what=f"w3 warm-up {system.name}")
        launcher.enqueue(system, queue, "latency", jobs, interval=interval, marks=marks.path)
        wait_count(lambda: marks.count, WARMUP_JOBS + jobs, [child], what=f"w3 {system.name}")
        problems = _finish(system, child, burst=False)
    samples = marks.samples(WARMUP_JOBS, WARMUP_JOBS + jobs)
    return Outcome(
        metrics={
            "p50_ms": percentile(samples, 50),
            "p99_ms": percentile(samples, 99),
            "max_ms": max(samples),
            "mean_ms": statistics.fmean(samples),
        },
        extra={"jobs": jobs, "interval_s": interval},
        problems=problems,
    )


# -- W4: idle cost ----------------------------------------------------------------------------


def _command_counts(client: redis.Redis) -> tuple[int, dict[str, int], int]:
    """(total_commands_processed, calls per command, connected_clients), in one INFO call."""
    info = client.info("all")
    calls = {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in info.items()
        if name.startswith("cmdstat_") and isinstance(value, dict)
    }
    return int(info["total_commands_processed"]), calls, int(info["connected_clients"])


def w4(bench: Bench, system: System) -> Outcome:
    seconds = bench.sizes.w4_seconds
    queue, marks, log = bench.fresh("w4", system.name)
    cap = bench.sizes.concurrency
    args = bench.launcher.worker_args(system, queue, cap)
    env = bench.launcher.env(system, queue, cap, marks.path)
    client = bench.client
    with running(args, env, bench.workdir, log) as child:
        bench.launcher.enqueue(system, queue, "noop", 1, marks=marks.path)
        wait_count(lambda: marks.count, 1, [child], what=f"w4 warm-up {system.name}")
        time.sleep(bench.sizes.w4_settle_s)
        total0, calls0, clients = _command_counts(client)
        cpu0, wall0 = tree_cpu_seconds(child.pid), time.monotonic()
        time.sleep(seconds)
        cpu1, wall1 = tree_cpu_seconds(child.pid), time.monotonic()
        total1, calls1, _ = _command_counts(client)
        problems = _finish(system, child, burst=False)
    elapsed = wall1 - wall0
    # The first INFO is counted once it has run, so it is in the delta; the second is not.
    worker_commands = total1 - total0 - 1
    delta = {name: calls1.get(name, 0) - calls0.get(name, 0) for name in calls1}
    delta["info"] = delta.get("info", 0) - 1
    per_s = {name: round(n / elapsed, 3) for name, n in sorted(delta.items()) if n > 0}
    return Outcome(
        metrics={
            "cpu_percent": (cpu1 - cpu0) / elapsed * 100,
            "commands_per_s": worker_commands / elapsed,
        },
        extra={"seconds": elapsed, "commands_per_s_by_name": per_s, "clients": clients - 1},
        problems=problems,
    )


# -- W5: memory with a 1,000,000-job backlog (coroq) ------------------------------------------


def w5_backlog(bench: Bench, system: System) -> Outcome:
    backlog = bench.sizes.w5_backlog
    seconds = bench.sizes.w5_seconds
    queue, marks, log = bench.fresh("w5", system.name)
    prefill_s = prefill_coroq_raw(bench.client, queue, backlog)
    cap = bench.sizes.concurrency
    args = bench.launcher.worker_args(system, queue, cap)
    env = bench.launcher.env(system, queue, cap, marks.path)
    with running(args, env, bench.workdir, log) as child, RssSampler(child.pid) as rss:
        wait_count(lambda: marks.count, 1, [child], what="w5 first job")
        started = time.monotonic()
        time.sleep(seconds)
        processed = marks.count
        problems = _finish(system, child, burst=False)
    ran = time.monotonic() - started
    first_s = rss.samples[0][0] if rss.samples else 0.0
    end_s = max((t for t, _ in rss.samples), default=0.0)
    start_mb = rss.window_mb(end_s - ran, end_s - ran + 1.0)
    end_mb = rss.window_mb(end_s - 1.0, end_s + 1.0)
    return Outcome(
        metrics={
            "rss_start_mb": start_mb,
            "rss_end_mb": end_mb,
            "rss_peak_mb": rss.peak_mb(),
            "rss_growth_mb": end_mb - start_mb,
            "processed": float(processed),
        },
        extra={"backlog": backlog, "seconds": seconds, "prefill_s": prefill_s,
               "first_sample_s": first_s},
        problems=problems,
    )  # fmt: skip


# -- push -------------------------------------------------------------------------------------


def push_file(bench: Bench) -> Path:
    """The JSON Lines file of `push_jobs` jobs for `producer push` (written once per run)."""
    path = bench.workdir / f"push-{bench.sizes.push_jobs}.jsonl"
    if not path.exists():
        line = orjson.dumps({"task": COROQ_TASKS["noop"]}) + b"\n"
        path.write_bytes(line * bench.sizes.push_jobs)
    return path


def push_cli(bench: Bench) -> Outcome:
    """`producer push FILE --queue Q --quiet`: the whole command, start-up included."""
    jobs = bench.sizes.push_jobs
    queue, _, log = bench.fresh("push", "coroq-cli")
    args = [sys.executable, "-m", "producer", "push", str(push_file(bench))]
    args += ["--queue", queue, "--quiet"]
    env = bench.launcher.coroq_env()
    code, wall, _ = run_to_end(args, env, bench.workdir, log, 600)
    pushed = bench.client.llen(f"coroq:{{{queue}}}:ready")
    problems = [] if code == 0 else [f"producer push exited with {code}"]
    if pushed != jobs:
        problems.append(f"producer push: {pushed} jobs in the list for {jobs}")
    return Outcome({"jobs_per_s": jobs / wall}, {"jobs": jobs, "wall_s": wall}, problems)


def push_api(bench: Bench, system: System) -> Outcome:
    """The library's own enqueue API, timed around the enqueue calls alone (coroq: building
    the envelopes and `Producer.push_many`)."""
    jobs = bench.sizes.push_jobs
    queue, marks, _ = bench.fresh("push", system.name)
    if system.is_coroq:
        enqueued = enqueue_coroq(bench.url, queue, "noop", jobs, 0.0)
        seconds = enqueued.wall_s
    else:
        enqueued = bench.launcher.enqueue(system, queue, "noop", jobs, marks=marks.path)
        seconds = enqueued.seconds
    extra = {"jobs": jobs, "seconds": seconds, "process_wall_s": enqueued.wall_s}
    return Outcome({"jobs_per_s": jobs / seconds}, extra)


# -- scale: coroq on 1 vs 2 worker processes --------------------------------------------------


def wait_for_workers(client: redis.Redis, queue: str, count: int, children: list[Child]) -> None:
    """Wait until `count` coroq workers of `queue` have written their heartbeat key."""
    pattern = f"coroq:{{{queue}}}:worker:*"
    deadline = time.monotonic() + 60
    while sum(1 for _ in client.scan_iter(match=pattern)) < count:
        for child in children:
            if child.process.poll() is not None:
                raise MeasureError(f"scale: a worker exited at start\n{child.log_tail()}")
        if time.monotonic() > deadline:
            raise MeasureError(f"scale: {count} worker(s) did not start within 60 s")
        time.sleep(0.02)


def scale(bench: Bench, system: System, processes: int) -> Outcome:
    """One worker command with `--processes N` (N = 1: the plain command), started and idle
    before the jobs arrive, so no start-up falls inside the window; then W1's figure.

    The jobs are pre-filled as in W1, but on another key, and handed over all at once with
    RENAME onto the queue's ready list (which serves the waiting pops): pushing them while the
    workers drain would put the producer's own CPU time inside the window."""
    jobs = bench.sizes.scale_jobs
    queue, marks, log = bench.fresh("scale", f"{system.name}-{processes}p")
    staging = f"{queue}-staging"
    enqueue_coroq(bench.url, staging, "noop", jobs, 0.0)
    cap = bench.sizes.concurrency
    args = bench.launcher.worker_args(system, queue, cap)
    if processes > 1:
        args += ["--processes", str(processes)]
    env = bench.launcher.env(system, queue, cap, marks.path)
    with running(args, env, bench.workdir, log) as child:
        wait_for_workers(bench.client, queue, processes, [child])
        bench.client.rename(QueueKeys(staging).ready, QueueKeys(queue).ready)
        wait_count(lambda: marks.count, jobs, [child], what=f"scale {processes}p")
        problems = _finish(system, child, burst=False)
    done, first, last = marks.header()
    if done != jobs:
        problems.append(f"scale: {done} completions for {jobs} jobs")
    extra = {"jobs": jobs, "processes": processes, "command": " ".join(args[1:])}
    return Outcome({"jobs_per_s": rate(done, last - first)}, extra, problems)
