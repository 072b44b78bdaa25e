"""What tracing costs a worker (docs/tracing.md): W1 (no-op jobs) drained by one worker
without tracing, and with OpenTelemetry's SDK set up and an exporter that drops every span.

    python bench/tracing.py [--jobs 30000] [--rounds 5] [--json PATH]

One private redis-server. Each round runs both cases in turn on fresh queues (the order
alternates between rounds): `--jobs` `bench.noop` jobs are pushed, held back while the worker
(`python -m worker`, concurrency 100) starts, then handed over at once; the drain runs from the
first poll that finds jobs taken to the first that finds both lists empty (bench/cluster.py's
`Drain`). Figures per case: jobs/s, and the worker process's CPU time per job over the drain
(user + system, all threads, from psutil), which the machine's noise moves less than the wall
clock. The cost of tracing is the difference of the CPU medians, in µs per job.

"untraced" is the plain worker of an environment where `coroq[otel]` is installed (as here)
and not configured: the figure every user without traces gets. The push side is measured too:
`push_many` of the same jobs inside a span (each job then carries its `trace` field) and
outside one, µs per job. Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as `python bench/tracing.py`
    sys.path.insert(0, str(REPO_ROOT))

import psutil  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402

from bench.cluster import Drain, wait_until, warning_lines  # noqa: E402
from bench.report_file import write_report  # noqa: E402
from bench.worker_processes import spawn_worker, stop_workers  # noqa: E402
from producer import JobEnvelope, Producer  # noqa: E402
from worker.local_redis import RedisServerProcess  # noqa: E402

DEFAULT_JSON = REPO_ROOT / "bench" / "results" / "tracing.json"
CASES = {"untraced": "bench.tasks", "traced": "bench.tasks,bench.traced_tasks"}


def drain_once(url: str, port: int, case: str, jobs: int, scratch: Path) -> dict[str, Any]:
    queue = f"tracing-{case}-{uuid.uuid4().hex[:6]}"
    drain = Drain(("127.0.0.1", port, queue), jobs)
    with Producer(url, queue=queue) as producer:
        producer.push_many([JobEnvelope(task="bench.noop") for _ in range(jobs)])
    drain.client.rename(drain.keys.ready, drain.held)
    log = scratch / f"{queue}.log"
    settings = {
        "COROQ_TASKS": CASES[case],
        "COROQ_REDIS_URL": url,
        "COROQ_QUEUES": queue,
        "COROQ_WORKER_ID": drain.worker_id,
        "COROQ_CONCURRENCY": "100",
        "COROQ_LOG_LEVEL": "warning",
    }
    worker = spawn_worker(settings, log)
    try:
        wait_until(drain.worker_up, [worker], [log])
        process = psutil.Process(worker.pid)
        before = process.cpu_times()
        drain.client.rename(drain.held, drain.keys.ready)
        wait_until(drain.poll, [worker], [log])
        after = process.cpu_times()
    finally:
        [code] = stop_workers([worker])
        drain.client.close()
    cpu_s = (after.user - before.user) + (after.system - before.system)
    started, ended = drain.started or 0.0, drain.ended or 0.0
    return {
        "jobs_per_s": round(jobs / (ended - started), 1),
        "cpu_us_per_job": round(cpu_s / jobs * 1e6, 2),
        "problem": None if code == 0 and not warning_lines(log) else f"exit {code}: see {log}",
    }


def push_cost(url: str, jobs: int) -> dict[str, float]:
    """µs per job of push_many, outside any span and inside one."""
    tracer = TracerProvider().get_tracer("bench.tracing")
    found: dict[str, float] = {}
    for case in ("outside_span", "inside_span"):
        queue = f"tracing-push-{uuid.uuid4().hex[:6]}"
        with Producer(url, queue=queue) as producer:
            envelopes = [JobEnvelope(task="bench.noop") for _ in range(jobs)]
            started = time.perf_counter()
            if case == "inside_span":
                with tracer.start_as_current_span("request"):
                    producer.push_many(envelopes)
            else:
                producer.push_many(envelopes)
            found[case] = round((time.perf_counter() - started) / jobs * 1e6, 2)
            producer.redis.delete(producer.keys_for(None).ready)
    return found


def spread(samples: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(samples), 2),
        "min": round(min(samples), 2),
        "max": round(max(samples), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    load_at_start = os.getloadavg()
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch_dir, RedisServerProcess() as server:
        for number in range(args.rounds):
            order = list(CASES) if number % 2 == 0 else list(reversed(CASES))
            found = {
                case: drain_once(server.url, server.port, case, args.jobs, Path(scratch_dir))
                for case in order
            }
            found["push"] = push_cost(server.url, args.jobs)
            rounds.append(found)
            print(f"round {number + 1}: {found}", file=sys.stderr)
    result: dict[str, Any] = {}
    for case in CASES:
        for figure in ("jobs_per_s", "cpu_us_per_job"):
            result[f"{case}_{figure}"] = spread([r[case][figure] for r in rounds])
    result["traced_cost_cpu_us_per_job"] = spread(
        [r["traced"]["cpu_us_per_job"] - r["untraced"]["cpu_us_per_job"] for r in rounds]
    )
    result["traced_to_untraced_jobs_per_s"] = spread(
        [r["traced"]["jobs_per_s"] / r["untraced"]["jobs_per_s"] for r in rounds]
    )
    for case in ("outside_span", "inside_span"):
        result[f"push_us_per_job_{case}"] = spread([r["push"][case] for r in rounds])
    problems = [r[case]["problem"] for r in rounds for case in CASES if r[case]["problem"]]
    for name, value in result.items():
        print(f"{name:36} {value['median']} [{value['min']} - {value['max']}]")
    print(f"{'problems':36} {problems or 'none'}")
    write_report(args.json, args, load_at_start, result, problems, rounds)


if __name__ == "__main__":
    main()
