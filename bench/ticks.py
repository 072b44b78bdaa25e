"""Periodic jobs: how close to its tick a periodic job starts, with several workers, and
whether any tick is pushed twice or lost (docs/scheduling.md#periodic-jobs).

    python bench/ticks.py [--workers 3] [--seconds 60] [--json PATH]

Starts a private redis-server on a free port and `--workers` real worker processes, each
given the same schedule (`COROQ_SCHEDULES`: the built-in task `echo` every second), for
`--seconds`. Then reads every tick job's record: the delay is the record's `started_at` (the
Redis server's clock, read by the start script) minus the tick's time (in the job's id,
`schedule:<name>:<tick ms>`), same machine, same clock. It counts the pushes per tick from the
workers' `schedule.pushed` log lines (each tick: 1) and the ticks missing between the first
and the last. Prints p50, p99 and the worst delay in ms; writes JSON
(bench/results/ticks.json). Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from itertools import pairwise
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as `python bench/ticks.py`
    sys.path.insert(0, str(REPO_ROOT))

import orjson  # noqa: E402
import redis  # noqa: E402

from producer.keys import QueueKeys  # noqa: E402
from worker.local_redis import RedisServerProcess  # noqa: E402

DEFAULT_JSON = REPO_ROOT / "bench" / "results" / "ticks.json"
SCHEDULE = "bench.tick"


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def start_worker(url: str, queue: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "COROQ_REDIS_URL": url,
        "COROQ_QUEUES": queue,
        "COROQ_LOG_FORMAT": "json",
        "COROQ_METRICS_PORT": "0",
        "COROQ_SCHEDULES": orjson.dumps({SCHEDULE: {"task": "echo", "every": 1}}).decode(),
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "worker"], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def pushes(logs: list[Path]) -> Counter[str]:
    counted: Counter[str] = Counter()
    for log in logs:
        for line in log.read_bytes().splitlines():
            if b"schedule.pushed" in line:
                counted[orjson.loads(line)["job_id"]] += 1
    return counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    queue = f"ticks-{uuid.uuid4().hex[:8]}"
    keys = QueueKeys(queue)
    with tempfile.TemporaryDirectory() as scratch, RedisServerProcess() as server:
        logs = [Path(scratch) / f"worker-{i}.log" for i in range(args.workers)]
        workers = [start_worker(server.url, queue, log) for log in logs]
        try:
            time.sleep(args.seconds)
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(30)
        counted = pushes(logs)
        client = redis.Redis.from_url(server.url)
        delays = []
        for job_id in counted:
            started = client.hget(keys.job(job_id), "started_at")
            if started is not None:
                tick = int(job_id.rsplit(":", 1)[1]) / 1000
                delays.append((float(started) - tick) * 1000)
    ticks = sorted(int(job_id.rsplit(":", 1)[1]) for job_id in counted)
    missing = sum((b - a) // 1000 - 1 for a, b in pairwise(ticks))
    result = {
        "workers": args.workers,
        "ticks": len(counted),
        "pushed_twice": sum(1 for n in counted.values() if n > 1),
        "missing": missing,
        "delay_ms_p50": round(percentile(delays, 0.5), 2),
        "delay_ms_p99": round(percentile(delays, 0.99), 2),
        "delay_ms_max": round(max(delays), 2),
    }
    for name, value in result.items():
        print(f"{name:14} {value}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_bytes(
        orjson.dumps(
            {"args": {k: str(v) for k, v in vars(args).items()}, "result": result},
            option=orjson.OPT_INDENT_2,
        )
    )


if __name__ == "__main__":
    main()
