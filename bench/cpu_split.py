"""Where the CPU goes while workers drain no-op jobs: the worker processes' and redis-server's
CPU time per job, and how many CPUs each kept busy.

    python bench/cpu_split.py [--jobs 20000] [--rounds 5] [--processes 1] [--cpu-affinity auto]

One private redis-server; one `worker` command (with `--processes N` when N > 1) started and
idle; then, each round, the jobs are pre-filled on another key and handed over at once with
RENAME onto the ready list, and the round ends when the ready and processing lists are empty.
CPU times come from the kernel (psutil: every thread of the worker and its children, and of
the server). This is what bounds the scale workload of bench/compare.py: N processes cannot
go faster than the CPUs left once Redis has had its share (docs/performance.md, Scale).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
import redis

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as `python bench/cpu_split.py`
    sys.path.insert(0, str(REPO_ROOT))

from bench.comparison.processes import running  # noqa: E402
from bench.comparison.systems import BY_NAME, COROQ, Launcher, pick_redis_server  # noqa: E402
from bench.comparison.workloads import wait_for_workers  # noqa: E402
from producer import Producer  # noqa: E402
from producer.envelope import build_envelope  # noqa: E402
from producer.keys import QueueKeys  # noqa: E402
from worker.local_redis import RedisServerProcess  # noqa: E402

QUEUE = "cpu-split"
STAGING = "cpu-split-staging"


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def one_round(
    client: redis.Redis,
    producer: Producer,
    jobs: int,
    processing: list[str],
    worker: psutil.Process,
    server: psutil.Process,
) -> dict[str, float]:
    producer.push_many([build_envelope("bench.noop", (), {}) for _ in range(jobs)], queue=STAGING)
    tree = [worker, *worker.children(recursive=True)]
    worker_before, server_before = cpu_seconds(tree), cpu_seconds([server])
    begin = time.perf_counter()
    client.rename(QueueKeys(STAGING).ready, QueueKeys(QUEUE).ready)
    while client.llen(QueueKeys(QUEUE).ready) + sum(client.llen(key) for key in processing):
        time.sleep(0.005)
    seconds = time.perf_counter() - begin
    worker_cpu = cpu_seconds(tree) - worker_before
    server_cpu = cpu_seconds([server]) - server_before
    return {
        "jobs_per_s": jobs / seconds,
        "worker_us_per_job": worker_cpu / jobs * 1e6,
        "redis_us_per_job": server_cpu / jobs * 1e6,
        "worker_cpus": worker_cpu / seconds,
        "redis_cpus": server_cpu / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--cpu-affinity", default="auto", help="the worker's setting")
    parser.add_argument("--redis-server", help="redis-server binary (default: a system one)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    options = parser.parse_args()

    server = RedisServerProcess(binary=pick_redis_server(options.redis_server))
    workdir = Path(tempfile.mkdtemp(prefix="coroq-cpu-split-"))
    try:
        server.start()
        assert server.process is not None  # started above
        launcher = Launcher(server.url, workdir)
        args = launcher.worker_args(BY_NAME[COROQ], QUEUE, options.concurrency)
        args += ["--cpu-affinity", options.cpu_affinity]
        if options.processes > 1:
            args += ["--processes", str(options.processes)]
        client = redis.Redis.from_url(server.url)
        with running(args, launcher.coroq_env(), workdir, workdir / "worker.log") as worker:
            wait_for_workers(client, QUEUE, options.processes, [worker])
            processing = [
                key.decode().replace(":worker:", ":processing:")
                for key in client.scan_iter(match=f"coroq:{{{QUEUE}}}:worker:*")
            ]
            with Producer(server.url) as producer:
                rounds = [
                    one_round(
                        client,
                        producer,
                        options.jobs,
                        processing,
                        psutil.Process(worker.pid),
                        psutil.Process(server.process.pid),
                    )
                    for _ in range(options.rounds)
                ]
        client.close()
    finally:
        server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
    median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    print(
        f"{options.processes} process(es), cpu_affinity {options.cpu_affinity}: "
        f"{median['jobs_per_s']:,.0f} jobs/s; CPU per job: worker "
        f"{median['worker_us_per_job']:.1f} us, "
        f"redis-server {median['redis_us_per_job']:.1f} us; CPUs busy: worker "
        f"{median['worker_cpus']:.2f}, redis-server {median['redis_cpus']:.2f} "
        f"(median of {options.rounds} rounds of {options.jobs:,} jobs; jobs/s "
        f"{min(r['jobs_per_s'] for r in rounds):,.0f}-{max(r['jobs_per_s'] for r in rounds):,.0f})"
    )
    if options.json is not None:
        options.json.write_text(
            json.dumps(
                {"options": vars(options) | {"json": None}, "rounds": rounds, "median": median}
            )
        )


if __name__ == "__main__":
    main()
