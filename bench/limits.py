"""Rate limits across workers: how closely `@task(rate_limit=...)` holds when several workers
drain one backlog of the task (docs/scheduling.md#rate-limits-and-global-concurrency).

    python bench/limits.py [--workers 3] [--rate 100] [--jobs 1000] [--concurrency 20]
                           [--keys 0] [--json PATH]

Starts a private redis-server on a free port, writes a tasks module into a temporary directory
(`bench.rated`, limited to `--rate` starts a second), pushes `--jobs` jobs of it, and only then
starts `--workers` real worker processes, each with `--concurrency` slots. Pushing first makes a
backlog: every worker finds work at once and all of them race for the same limiter, the case
where a limit that is only approximate would show it. With `--keys N` the task takes
`limit_key="tenant"`, the jobs go round-robin to N tenants and each tenant has the rate of its
own: every figure below is then per tenant, the worst tenant's.

From the job records (`started_at`, the Redis server's clock, read by the start script):
- the most starts in any window of one period (1 s) against the limit (`--rate`), and when
  the fullest such window opened, in seconds after the first start;
- the most starts in any window of a tenth of the period against rate/10, to show evenness:
  starts are handed out evenly, one every period/count (and 2 % more), so a burst at the start
  of each second would show here; a stall (a loaded machine) lets the jobs whose times passed
  start together, as far as the period's limit allows;
- the achieved rate, (jobs - 1) / (last start - first start), and the longest gap between two
  starts (a stall, after which the jobs whose reserved times passed start together);
- the jobs run by each worker, and the jobs that took more than one attempt (0 expected).
Prints the figures and writes JSON (bench/results/limits.json). Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import uuid
from collections import Counter, defaultdict
from itertools import pairwise
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as `python bench/limits.py`
    sys.path.insert(0, str(REPO_ROOT))

import orjson  # noqa: E402

from bench.worker_processes import spawn_worker, stop_workers  # noqa: E402
from producer import JobEnvelope, Producer  # noqa: E402
from worker.local_redis import RedisServerProcess  # noqa: E402

DEFAULT_JSON = REPO_ROOT / "bench" / "results" / "limits.json"
TASKS_MODULE = "bench_limit_tasks"
TASK = "bench.rated"
PERIOD_S = 1.0
GOAL = "never above the limit"


def tasks_module_text(rate: int, keys: int) -> str:
    """The workers' tasks module: the rate is a flag, so the decorator is written out here."""
    if keys:
        options, parameters = f'rate_limit="{rate}/s", limit_key="tenant"', "tenant: str, i: int"
    else:
        options, parameters = f'rate_limit="{rate}/s"', "i: int"
    return (
        "from worker import task\n\n\n"
        f'@task("{TASK}", {options})\n'
        f"async def rated({parameters}) -> int:\n"
        "    return i\n"
    )


def start_worker(
    url: str, queue: str, concurrency: int, tasks_dir: Path, log: Path
) -> subprocess.Popen[bytes]:
    settings = {
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(tasks_dir)]),
        "COROQ_TASKS": TASKS_MODULE,
        "COROQ_REDIS_URL": url,
        "COROQ_QUEUES": queue,
        "COROQ_CONCURRENCY": str(concurrency),
    }
    return spawn_worker(settings, log)


def most_in_window(starts_us: list[int], width_us: int) -> tuple[int, int]:
    """The most starts in any half-open window [t, t + width), and where the first such
    window opens: a sliding window over the sorted times, each window opening at a start
    (where a maximum always begins). Whole microseconds (the server clock's resolution), so
    1.0 s is never 0.999999... s."""
    most, opens_at, first = 0, 0, 0
    for last, at in enumerate(starts_us):
        while at - starts_us[first] >= width_us:
            first += 1
        if last - first + 1 > most:
            most, opens_at = last - first + 1, starts_us[first]
    return most, opens_at


def allowed_in(width: float, rate: int) -> int:
    """Starts one interval apart that fit in [t, t + width); rounded so 100 * 0.1 is 10."""
    return math.ceil(round(width * rate / PERIOD_S, 9))


def limiter_figures(starts: list[float]) -> dict[str, float]:
    starts_us = [round(at * 1e6) for at in starts]
    in_period, period_opens_at = most_in_window(starts_us, round(PERIOD_S * 1e6))
    span = starts[-1] - starts[0]
    return {
        "jobs": len(starts),
        "max_in_period": in_period,
        # Seconds after the first start: near 0 says the excess is the workers' start-up.
        "fullest_period_at_s": round((period_opens_at - starts_us[0]) / 1e6, 3),
        "max_in_tenth": most_in_window(starts_us, round(PERIOD_S * 1e5))[0],
        "achieved_per_s": round((len(starts) - 1) / span, 2) if span > 0 else math.inf,
        # A stall: the jobs whose reserved start times passed meanwhile all start after it.
        "longest_gap_ms": round(max((b - a for a, b in pairwise(starts)), default=0) * 1000, 1),
    }


def log_problems(logs: list[Path]) -> int:
    """Warning and error lines the workers logged (none expected)."""
    levels = (b'"level":"warning"', b'"level":"error"', b'"level":"critical"')
    lines = (line for log in logs for line in log.read_bytes().splitlines())
    return sum(1 for line in lines if any(level in line for level in levels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--rate", type=int, default=100, help="starts a second")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--keys", type=int, default=0, help="tenants, each with its own rate")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    queue = f"limits-{uuid.uuid4().hex[:8]}"
    tenants = [f"tenant-{n}" for n in range(args.keys)]
    envelopes = [
        JobEnvelope(task=TASK, args={"tenant": tenants[i % args.keys], "i": i} if tenants else [i])
        for i in range(args.jobs)
    ]
    # The slowest limiter gets ceil(jobs / keys) jobs at `rate`; the rest is start-up slack.
    timeout = math.ceil(args.jobs / max(1, args.keys)) / args.rate + 60
    # Entering the context starts the server (and its exit stops it): calling `.start()` as
    # well would start a second one on the same port and leave the first running.
    with tempfile.TemporaryDirectory() as scratch, RedisServerProcess() as server:
        tasks_dir = Path(scratch)
        (tasks_dir / f"{TASKS_MODULE}.py").write_text(tasks_module_text(args.rate, args.keys))
        logs = [tasks_dir / f"worker-{n}.log" for n in range(args.workers)]
        producer = Producer(server.url, queue=queue)
        workers: list[subprocess.Popen[bytes]] = []
        try:
            ids = producer.push_many(envelopes)  # all of them before any worker: a backlog
            for log in logs:
                workers.append(start_worker(server.url, queue, args.concurrency, tasks_dir, log))
            records = producer.wait(ids, timeout=timeout)
        finally:
            exit_codes = stop_workers(workers)
            producer.close()
        problems = log_problems(logs)
    starts_by_limiter: defaultdict[str, list[float]] = defaultdict(list)
    for job_id, envelope in zip(ids, envelopes, strict=True):
        limiter = envelope.keywords.get("tenant", TASK)
        starts_by_limiter[limiter].append(float(records[job_id]["started_at"]))
    per_limiter = {name: limiter_figures(sorted(s)) for name, s in starts_by_limiter.items()}
    fullest = max(per_limiter.values(), key=lambda figures: figures["max_in_period"])
    by_worker = Counter(str(record["worker"]) for record in records.values())
    result = {
        "limiters": len(per_limiter),
        "limit_per_period": allowed_in(PERIOD_S, args.rate),
        "max_in_period": fullest["max_in_period"],
        "fullest_period_at_s": fullest["fullest_period_at_s"],
        "limit_per_tenth": allowed_in(PERIOD_S / 10, args.rate),
        "max_in_tenth": max(f["max_in_tenth"] for f in per_limiter.values()),
        "achieved_per_s": min(f["achieved_per_s"] for f in per_limiter.values()),
        "longest_gap_ms": max(f["longest_gap_ms"] for f in per_limiter.values()),
        "jobs_per_worker": sorted(by_worker.values(), reverse=True),
        "not_succeeded": sum(1 for r in records.values() if r.get("status") != "succeeded"),
        "attempts_over_1": sum(1 for r in records.values() if r.get("attempts") != 1),
        "worker_exit_codes": exit_codes,
        "worker_log_problems": problems,
    }
    goal = f"  goal: {GOAL}"
    for name, value in result.items():
        print(f"{name:20} {value}{goal if name == 'max_in_period' else ''}")
    report = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "goal": GOAL,
        "result": result,
        "per_limiter": per_limiter,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
