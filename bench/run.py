"""coroq benchmark: one worker process against the floor of a bare BRPOP loop, same run.

    python bench/run.py [--jobs 20000] [--latency-jobs 1000] [--rounds 3] [--quick]
                        [--json bench/results/latest.json]

Starts a private redis-server on a free port, then runs `--rounds` rounds, each of:

1. coroq throughput: N no-op jobs pre-filled with `Producer.push_many`, drained by one real
   `python -m worker --burst` process; jobs/s over first `started_at` → last `finished_at`.
2. BRPOP throughput: the same N payloads drained by `bench/brpop_loop.py` (BRPOP + orjson).
3. coroq latency: an idle worker, one `Producer.push` every 10 ms; `started_at - enqueued_at`.
4. BRPOP latency: the same pushes to an idle BRPOP loop; receipt time - `enqueued_at`.

Prints a table (medians and min-max over rounds, ratios coroq / BRPOP) and writes JSON.
See bench/README.md for how to read it.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
import redis

from producer import Producer
from producer.envelope import JobEnvelope, build_envelope
from producer.keys import QueueKeys
from worker.local_redis import RedisServerProcess

REPO_ROOT = Path(__file__).resolve().parent.parent
BRPOP_LOOP = REPO_ROOT / "bench" / "brpop_loop.py"
DEFAULT_JSON = REPO_ROOT / "bench" / "results" / "latest.json"

TASK = "bench.noop"
TASK_MODULE = "bench.tasks"
CONCURRENCY = 100
PUSH_INTERVAL_S = 0.010
WARMUP_JOBS = 5  # pushed before a latency run, to know the consumer is up; not measured
POLL_INTERVAL_S = 0.02
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 20.0
RECORD_BATCH = 1000
RECORD_FIELDS = ("status", "started_at", "finished_at", "enqueued_at", "attempts")
LOG_TAIL_LINES = 20

FULL = {"jobs": 20_000, "latency_jobs": 1000, "rounds": 3}
QUICK = {"jobs": 500, "latency_jobs": 300, "rounds": 1}


class BenchError(RuntimeError):
    """A measurement could not be taken (a process died, a condition was never reached)."""


# -- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Config:
    jobs: int
    latency_jobs: int
    rounds: int
    json_path: Path
    quick: bool
    concurrency: int = CONCURRENCY
    interval_s: float = PUSH_INTERVAL_S


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_config(argv: Sequence[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description="coroq throughput and latency benchmark")
    parser.add_argument("--jobs", type=positive_int, help="throughput jobs per run (20000)")
    parser.add_argument("--latency-jobs", type=positive_int, help="latency jobs per run (1000)")
    parser.add_argument("--rounds", type=positive_int, help="interleaved rounds (3)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 500 jobs, 300 latency jobs, 1 round"
    )
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    return Config(
        jobs=args.jobs or defaults["jobs"],
        latency_jobs=args.latency_jobs or defaults["latency_jobs"],
        rounds=args.rounds or defaults["rounds"],
        json_path=args.json,
        quick=args.quick,
    )


# -- waiting and child processes -------------------------------------------------------------


def wait_for(
    condition: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll `condition` until true; fail when `process` exits first or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise BenchError(f"{what}: the process exited ({process.returncode}) before that")
        if time.monotonic() >= deadline:
            raise BenchError(f"{what}: not reached within {timeout:g} s")
        time.sleep(POLL_INTERVAL_S)


def wait_exit(process: subprocess.Popen[bytes], timeout: float) -> int | None:
    """The exit code, or None when the process is still running after `timeout`."""
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after a grace period; a no-op for a process that has exited."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    if wait_exit(process, STOP_GRACE_S) is None:
        process.kill()
        process.wait()


def child_env(url: str) -> dict[str, str]:
    """This environment without any COROQ_* of the caller's, plus the benchmark's own."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("COROQ_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env.update(COROQ_REDIS_URL=url, COROQ_LOG_LEVEL="warning", COROQ_LOG_FORMAT="json")
    return env


def log_tail(path: Path) -> str:
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return "\n".join(lines[-LOG_TAIL_LINES:])


@contextmanager
def child(args: list[str], url: str, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A subprocess with its output in `log_path`; always stopped on the way out."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            args, env=child_env(url), cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            yield process
        except BaseException:
            print(f"--- last lines of {log_path.name} ---\n{log_tail(log_path)}", file=sys.stderr)
            raise
        finally:
            stop(process)


def worker_args(queue: str, concurrency: int, *, burst: bool) -> list[str]:
    args = [sys.executable, "-m", "worker", "--queues", queue]
    args += ["--concurrency", str(concurrency), "--tasks", TASK_MODULE]
    return [*args, "--burst"] if burst else args


def brpop_args(url: str, key: str, count: int, out: Path, *, latency: bool) -> list[str]:
    args = [sys.executable, str(BRPOP_LOOP), url, key, str(count), str(out)]
    return [*args, "--latency"] if latency else args


def log_problems(path: Path) -> list[str]:
    """Warning and error lines of a worker's JSON log, and any line that is not JSON."""
    problems = []
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            entry = None
        if not isinstance(entry, dict):
            problems.append(f"non-JSON output: {line[:200].decode(errors='replace')}")
        elif entry.get("level") in ("warning", "error", "critical"):
            detail = entry.get("error") or entry.get("reason") or ""
            problems.append(f"{entry['level']}: {entry.get('event')} {detail}".strip())
    return problems


# -- Redis side: jobs, records, cleanup -------------------------------------------------------


def unique_queue(kind: str) -> str:
    return f"bench-{kind}-{uuid.uuid4().hex[:10]}"


def noop_envelopes(count: int) -> list[JobEnvelope]:
    return [build_envelope(TASK, (), {}) for _ in range(count)]


@dataclass(frozen=True, slots=True)
class JobRecord:
    status: str | None
    started_at: float | None
    finished_at: float | None
    enqueued_at: float | None
    attempts: int | None

    @classmethod
    def from_values(cls, values: Sequence[bytes | None]) -> JobRecord:
        status, started, finished, enqueued, attempts = values
        return cls(
            status=status.decode() if status is not None else None,
            started_at=float(started) if started is not None else None,
            finished_at=float(finished) if finished is not None else None,
            enqueued_at=float(enqueued) if enqueued is not None else None,
            attempts=int(attempts) if attempts is not None else None,
        )


def read_records(client: redis.Redis, keys: QueueKeys, ids: Sequence[str]) -> list[JobRecord]:
    records: list[JobRecord] = []
    for start in range(0, len(ids), RECORD_BATCH):
        pipe = client.pipeline(transaction=False)
        for job_id in ids[start : start + RECORD_BATCH]:
            pipe.hmget(keys.job(job_id), RECORD_FIELDS)
        records.extend(JobRecord.from_values(values) for values in pipe.execute())
    return records


def all_finished(client: redis.Redis, keys: QueueKeys, ids: Sequence[str]) -> bool:
    return all(r.status in ("succeeded", "dead") for r in read_records(client, keys, ids))


def list_empty(client: redis.Redis, key: str) -> bool:
    return client.llen(key) == 0


def record_problems(records: Sequence[JobRecord]) -> list[str]:
    """What is wrong with the records of jobs that should all have succeeded once."""
    statuses = Counter(r.status or "no record" for r in records if r.status != "succeeded")
    problems = [f"{count} job(s) {status}" for status, count in sorted(statuses.items())]
    retried = sum(1 for r in records if (r.attempts or 0) > 1)
    if retried:
        problems.append(f"{retried} job(s) took more than one attempt")
    return problems


def leftovers(client: redis.Redis, keys: QueueKeys) -> list[str]:
    """Jobs still in the queue's lists after a run that should have consumed them all."""
    counts = {"ready": client.llen(keys.ready), "dead": client.llen(keys.dead)}
    counts["processing"] = sum(
        client.llen(key) for key in client.scan_iter(match=keys.processing_pattern)
    )
    return [f"{count} left in the {name} list" for name, count in counts.items() if count]


def drop_queue(client: redis.Redis, keys: QueueKeys) -> None:
    """Delete every key of a benchmark queue, so rounds do not grow the server."""
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{keys.base}:*", count=1000):
        batch.append(key)
        if len(batch) >= RECORD_BATCH:
            client.unlink(*batch)
            batch = []
    if batch:
        client.unlink(*batch)


def paced_push(push: Callable[[], str], count: int, interval_s: float) -> list[str]:
    """Push `count` jobs, one every `interval_s` on a fixed schedule (the workload's arrival
    rate: the sleep paces the load, it synchronises nothing)."""
    ids = []
    begin = time.monotonic()
    for index in range(count):
        delay = begin + index * interval_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        ids.append(push())
    return ids


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Throughput:
    jobs: int
    succeeded: int
    seconds: float  # first job started -> last job finished
    startup_s: float | None = None  # coroq only: worker spawned -> first job started
    exit_lag_s: float | None = None  # coroq only: last job finished -> --burst worker exited
    problems: list[str] = field(default_factory=list)

    @property
    def jobs_per_s(self) -> float:
        return self.succeeded / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "succeeded": self.succeeded,
            "seconds": self.seconds,
            "jobs_per_s": self.jobs_per_s,
            "startup_s": self.startup_s,
            "exit_lag_s": self.exit_lag_s,
            "problems": self.problems,
        }


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (a value that was actually observed)."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


@dataclass(frozen=True, slots=True)
class Latency:
    expected: int
    samples_ms: list[float]
    problems: list[str] = field(default_factory=list)

    @property
    def p50(self) -> float:
        return percentile(self.samples_ms, 50) if self.samples_ms else math.nan

    @property
    def p99(self) -> float:
        return percentile(self.samples_ms, 99) if self.samples_ms else math.nan

    @property
    def max(self) -> float:
        return max(self.samples_ms) if self.samples_ms else math.nan

    def to_json(self) -> dict[str, Any]:
        return {
            "expected": self.expected,
            "measured": len(self.samples_ms),
            "p50_ms": self.p50,
            "p99_ms": self.p99,
            "max_ms": self.max,
            "mean_ms": statistics.fmean(self.samples_ms) if self.samples_ms else math.nan,
            "problems": self.problems,
        }


@dataclass(frozen=True, slots=True)
class Round:
    number: int
    coroq_throughput: Throughput
    brpop_throughput: Throughput
    coroq_latency: Latency
    brpop_latency: Latency

    def to_json(self) -> dict[str, Any]:
        return {
            "round": self.number,
            "throughput": {
                "coroq": self.coroq_throughput.to_json(),
                "brpop": self.brpop_throughput.to_json(),
            },
            "latency": {
                "coroq": self.coroq_latency.to_json(),
                "brpop": self.brpop_latency.to_json(),
            },
        }

    def problems(self) -> list[str]:
        parts = {
            "coroq throughput": self.coroq_throughput.problems,
            "BRPOP throughput": self.brpop_throughput.problems,
            "coroq latency": self.coroq_latency.problems,
            "BRPOP latency": self.brpop_latency.problems,
        }
        return [f"round {self.number}, {name}: {p}" for name, ps in parts.items() for p in ps]


# -- the four measurements -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bench:
    url: str
    config: Config
    workdir: Path


def coroq_throughput(bench: Bench, number: int) -> Throughput:
    jobs = bench.config.jobs
    with Producer(bench.url, queue=unique_queue("tp")) as producer:
        keys = producer.keys_for(None)
        ids = producer.push_many(noop_envelopes(jobs))
        log_path = bench.workdir / f"worker-throughput-{number}.log"
        args = worker_args(producer.queue, bench.config.concurrency, burst=True)
        spawned_at = time.time()
        with child(args, bench.url, log_path) as process:
            code = wait_exit(process, READY_TIMEOUT_S + jobs / 100)
            exited_at = time.time() if code is not None else None
        records = read_records(producer.redis, keys, ids)
        problems = record_problems(records) + leftovers(producer.redis, keys)
        drop_queue(producer.redis, keys)
    if code is None:
        problems.append("the --burst worker did not exit after the queue drained")
    elif code != 0:
        problems.append(f"the worker exited with {code}")
    problems += log_problems(log_path)
    return throughput_from_records(records, spawned_at, exited_at, problems)


def throughput_from_records(
    records: Sequence[JobRecord], spawned_at: float, exited_at: float | None, problems: list[str]
) -> Throughput:
    """Jobs/s over the first job's start to the last job's finish, as the worker wrote them."""
    done = [r for r in records if r.status == "succeeded"]
    starts = [r.started_at for r in done if r.started_at is not None]
    ends = [r.finished_at for r in done if r.finished_at is not None]
    if not (starts and ends):
        return Throughput(len(records), len(done), 0.0, problems=problems)
    return Throughput(
        jobs=len(records),
        succeeded=len(done),
        seconds=max(ends) - min(starts),
        startup_s=min(starts) - spawned_at,
        exit_lag_s=exited_at - max(ends) if exited_at is not None else None,
        problems=problems,
    )


def brpop_throughput(bench: Bench, number: int) -> Throughput:
    jobs = bench.config.jobs
    out = bench.workdir / f"brpop-throughput-{number}.json"
    with Producer(bench.url, queue=unique_queue("brpop-tp")) as producer:
        keys = producer.keys_for(None)
        producer.push_many(noop_envelopes(jobs))
        args = brpop_args(bench.url, keys.ready, jobs, out, latency=False)
        with child(args, bench.url, bench.workdir / f"brpop-throughput-{number}.log") as process:
            code = wait_exit(process, READY_TIMEOUT_S + jobs / 100)
        drop_queue(producer.redis, keys)
    result = read_loop_result(out, code)
    seconds = result["last_done_at"] - result["first_received_at"]
    return Throughput(jobs, result["taken"], seconds, problems=loop_problems(result, code))


def read_loop_result(out: Path, code: int | None) -> dict[str, Any]:
    if not out.exists():
        raise BenchError(f"the BRPOP loop wrote no result (exit code {code})")
    result: dict[str, Any] = orjson.loads(out.read_bytes())
    return result


def loop_problems(result: dict[str, Any], code: int | None) -> list[str]:
    problems = [] if code == 0 else [f"the BRPOP loop exited with {code}"]
    if not result["hiredis"]:
        problems.append("the BRPOP loop ran without hiredis")
    return problems


def coroq_latency(bench: Bench, number: int) -> Latency:
    count = bench.config.latency_jobs
    log_path = bench.workdir / f"worker-latency-{number}.log"
    with Producer(bench.url, queue=unique_queue("lat")) as producer:
        keys = producer.keys_for(None)
        args = worker_args(producer.queue, bench.config.concurrency, burst=False)
        with child(args, bench.url, log_path) as process:
            warmup = [producer.push(TASK) for _ in range(WARMUP_JOBS)]
            ready = functools.partial(all_finished, producer.redis, keys, warmup)
            wait_for(ready, timeout=READY_TIMEOUT_S, what="worker warm-up", process=process)
            ids = paced_push(lambda: producer.push(TASK), count, bench.config.interval_s)
            done = functools.partial(all_finished, producer.redis, keys, ids)
            wait_for(done, timeout=READY_TIMEOUT_S, what="latency jobs done", process=process)
            process.send_signal(signal.SIGTERM)
            code = wait_exit(process, STOP_GRACE_S)
        records = read_records(producer.redis, keys, ids)
        problems = record_problems(records) + leftovers(producer.redis, keys)
        drop_queue(producer.redis, keys)
    if code != 0:
        problems.append(f"the worker did not exit 0 on SIGTERM (exit code {code})")
    problems += log_problems(log_path)
    samples = [
        (r.started_at - r.enqueued_at) * 1000
        for r in records
        if r.started_at is not None and r.enqueued_at is not None
    ]
    return Latency(count, samples, problems)


def brpop_latency(bench: Bench, number: int) -> Latency:
    count = bench.config.latency_jobs
    out = bench.workdir / f"brpop-latency-{number}.json"
    with Producer(bench.url, queue=unique_queue("brpop-lat")) as producer:
        keys = producer.keys_for(None)
        args = brpop_args(bench.url, keys.ready, WARMUP_JOBS + count, out, latency=True)
        with child(args, bench.url, bench.workdir / f"brpop-latency-{number}.log") as process:
            for _ in range(WARMUP_JOBS):
                producer.push(TASK)
            taken = functools.partial(list_empty, producer.redis, keys.ready)
            wait_for(taken, timeout=READY_TIMEOUT_S, what="BRPOP warm-up", process=process)
            paced_push(lambda: producer.push(TASK), count, bench.config.interval_s)
            code = wait_exit(process, READY_TIMEOUT_S)
        drop_queue(producer.redis, keys)
    result = read_loop_result(out, code)
    return Latency(count, result["latencies_ms"][WARMUP_JOBS:], loop_problems(result, code))


def run_round(bench: Bench, number: int) -> Round:
    total = bench.config.rounds
    progress(f"round {number}/{total}: coroq throughput ({bench.config.jobs} jobs)")
    coroq_tp = coroq_throughput(bench, number)
    progress(f"  coroq  {coroq_tp.jobs_per_s:>10,.0f} jobs/s  ({coroq_tp.seconds:.2f} s)")
    brpop_tp = brpop_throughput(bench, number)
    progress(f"  BRPOP  {brpop_tp.jobs_per_s:>10,.0f} jobs/s  ({brpop_tp.seconds:.2f} s)")
    progress(f"round {number}/{total}: latency ({bench.config.latency_jobs} jobs, 10 ms apart)")
    coroq_lat = coroq_latency(bench, number)
    progress(f"  coroq  p50 {coroq_lat.p50:.2f} ms  p99 {coroq_lat.p99:.2f} ms")
    brpop_lat = brpop_latency(bench, number)
    progress(f"  BRPOP  p50 {brpop_lat.p50:.2f} ms  p99 {brpop_lat.p99:.2f} ms")
    return Round(number, coroq_tp, brpop_tp, coroq_lat, brpop_lat)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- summary and report ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spread:
    median: float
    low: float
    high: float
    values: list[float]

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values), list(values))

    def to_json(self) -> dict[str, Any]:
        return {"median": self.median, "min": self.low, "max": self.high, "rounds": self.values}


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def optional(value: float | None) -> float:
    return math.nan if value is None else value


def summarise(rounds: Sequence[Round]) -> dict[str, Spread]:
    """Each figure over the rounds; ratios are taken per round (paired), then summarised."""

    def over(value: Callable[[Round], float]) -> Spread:
        return Spread.of([value(r) for r in rounds])

    return {
        "coroq_jobs_per_s": over(lambda r: r.coroq_throughput.jobs_per_s),
        "brpop_jobs_per_s": over(lambda r: r.brpop_throughput.jobs_per_s),
        "throughput_ratio": over(
            lambda r: ratio(r.coroq_throughput.jobs_per_s, r.brpop_throughput.jobs_per_s)
        ),
        "coroq_startup_s": over(lambda r: optional(r.coroq_throughput.startup_s)),
        "coroq_exit_lag_s": over(lambda r: optional(r.coroq_throughput.exit_lag_s)),
        "coroq_p50_ms": over(lambda r: r.coroq_latency.p50),
        "coroq_p99_ms": over(lambda r: r.coroq_latency.p99),
        "coroq_max_ms": over(lambda r: r.coroq_latency.max),
        "brpop_p50_ms": over(lambda r: r.brpop_latency.p50),
        "brpop_p99_ms": over(lambda r: r.brpop_latency.p99),
        "brpop_max_ms": over(lambda r: r.brpop_latency.max),
        "p50_ratio": over(lambda r: ratio(r.coroq_latency.p50, r.brpop_latency.p50)),
        "p99_ratio": over(lambda r: ratio(r.coroq_latency.p99, r.brpop_latency.p99)),
    }


def spread_text(spread: Spread, fmt: str) -> str:
    return f"{spread.median:{fmt}} [{spread.low:{fmt}} - {spread.high:{fmt}}]"


def throughput_rows(s: dict[str, Spread]) -> list[str]:
    def row(label: str, spread: Spread, fmt: str) -> str:
        per_round = "  ".join(f"{v:{fmt}}" for v in spread.values)
        return f"  {label:<34}{spread_text(spread, fmt):>28}   {per_round}"

    return [
        f"{'Throughput, no-op jobs':<36}{'median [min - max]':>28}   per round",
        row("coroq worker (jobs/s)", s["coroq_jobs_per_s"], ",.0f"),
        row("BRPOP loop, floor (jobs/s)", s["brpop_jobs_per_s"], ",.0f"),
        row("ratio coroq / BRPOP", s["throughput_ratio"], ".3f"),
        row("coroq spawn -> first start (s)", s["coroq_startup_s"], ".2f"),
        row("coroq last finish -> exit (s)", s["coroq_exit_lag_s"], ".2f"),
    ]


def latency_rows(s: dict[str, Spread]) -> list[str]:
    def row(label: str, p50: Spread, p99: Spread, top: Spread | None, fmt: str) -> str:
        cells = [spread_text(p50, fmt), spread_text(p99, fmt)]
        cells.append(spread_text(top, fmt) if top is not None else "")
        return (f"  {label:<24}" + "".join(f"{cell:>24}" for cell in cells)).rstrip()

    header = "".join(f"{name:>24}" for name in ("p50", "p99", "max"))
    return [
        f"{'Latency push -> start (ms)':<26}{header}",
        row("coroq worker", s["coroq_p50_ms"], s["coroq_p99_ms"], s["coroq_max_ms"], ".2f"),
        row("BRPOP loop, floor", s["brpop_p50_ms"], s["brpop_p99_ms"], s["brpop_max_ms"], ".2f"),
        row("ratio coroq / BRPOP", s["p50_ratio"], s["p99_ratio"], None, ".2f"),
    ]


def render(config: Config, environment: dict[str, Any], s: dict[str, Spread]) -> str:
    lines = [
        f"coroq bench: {config.jobs:,} jobs x {config.rounds} round(s), concurrency "
        f"{config.concurrency}; latency {config.latency_jobs:,} jobs, one per "
        f"{config.interval_s * 1000:g} ms; code {environment['git']}",
        f"redis {environment['redis_version']} (private, port {environment['redis_port']}), "
        f"Python {environment['python']}, {environment['cpus']} CPUs, "
        f"uvloop {environment['uvloop']}, hiredis {environment['hiredis']}, "
        f"load avg {environment['load_avg_start'][0]:.2f} -> {environment['load_avg_end'][0]:.2f}",
        "",
        *throughput_rows(s),
        "",
        *latency_rows(s),
    ]
    return "\n".join(lines)


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def git_revision() -> str:
    """The commit the worker code comes from, `-dirty` when the work tree has changes."""
    try:
        result = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return result.stdout.strip() or "unknown"


def describe_environment(server: RedisServerProcess) -> dict[str, Any]:
    client = redis.Redis.from_url(server.url)
    try:
        info = client.info("server")
    finally:
        client.close()
    return {
        "git": git_revision(),
        "redis_version": info["redis_version"],
        "redis_port": server.port,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "uvloop": package_version("uvloop"),
        "hiredis": package_version("hiredis"),
        "redis_py": package_version("redis"),
        "load_avg_start": os.getloadavg(),
    }


def write_json(
    config: Config,
    environment: dict[str, Any],
    rounds: Sequence[Round],
    summary: dict[str, Spread],
    problems: list[str],
) -> None:
    document = {
        "config": {
            "jobs": config.jobs,
            "latency_jobs": config.latency_jobs,
            "rounds": config.rounds,
            "concurrency": config.concurrency,
            "push_interval_s": config.interval_s,
            "quick": config.quick,
            "task": TASK,
        },
        "environment": environment,
        "summary": {name: spread.to_json() for name, spread in summary.items()},
        "rounds": [r.to_json() for r in rounds],
        "problems": problems,
    }
    config.json_path.parent.mkdir(parents=True, exist_ok=True)
    config.json_path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")


def run_all(config: Config) -> tuple[dict[str, Any], list[Round]]:
    server = RedisServerProcess()
    try:
        server.start()
        environment = describe_environment(server)
        with tempfile.TemporaryDirectory(prefix="coroq-bench-") as workdir:
            bench = Bench(server.url, config, Path(workdir))
            rounds = [run_round(bench, n) for n in range(1, config.rounds + 1)]
    finally:
        server.cleanup()
    environment["load_avg_end"] = os.getloadavg()
    return environment, rounds


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(argv)
    try:
        environment, rounds = run_all(config)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    summary = summarise(rounds)
    problems = [p for r in rounds for p in r.problems()]
    print(render(config, environment, summary))
    print("\nproblems: " + ("none" if not problems else ""))
    for problem in problems:
        print(f"  - {problem}")
    write_json(config, environment, rounds, summary, problems)
    print(f"\nresults: {config.json_path}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
