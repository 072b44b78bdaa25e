"""Priorities between queues: how soon a job pushed to `critical` starts while a large backlog
waits in `bulk`, against the same job on an idle worker (docs/scheduling.md#priorities).

    python bench/priority.py [--backlog 100000] [--probes 200] [--concurrency 10] [--json PATH]

Starts a private redis-server on a free port, then measures two phases, each with a fresh pair
of queues and a fresh worker process started the same way:
`python -m worker --queues <critical>,<bulk> --concurrency 10 --tasks bench.tasks`.

1. backlog: `--backlog` jobs of the built-in `sleep` task (10 ms each) are pushed to bulk with
   `push_many` before the worker starts, so every slot is busy with bulk from the first moment.
   Once the worker has taken some, `--probes` `bench.noop` jobs are pushed to critical one at a
   time, every 20 ms on a fixed schedule.
2. idle: the same probes, the same way, with bulk empty.
Both phases first push a few warm-up probes and wait for them (not measured), so the critical
consumer is known to be up. A probe's latency is its record's `started_at` (the Redis server's
clock, read by the start script) minus its `enqueued_at` (stamped by the producer just before
the push), same machine; `bench.latency` keeps its figure in the peer comparison's marks file,
not in the record, so the probes are plain no-ops. Prints p50, p99 and the worst in ms for both
phases, the ratios backlog / idle, and how many bulk jobs still waited once the last probe had
run (it must be large: the backlog was there all along). Writes JSON
(bench/results/priority.json). The workers log at warning level, so writing 200,000 per-job
info lines is not measured as the backlog's cost. Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as `python bench/priority.py`
    sys.path.insert(0, str(REPO_ROOT))

import orjson  # noqa: E402
import redis  # noqa: E402

from producer import JobEnvelope, Producer, QueueKeys  # noqa: E402
from worker.local_redis import RedisServerProcess  # noqa: E402

DEFAULT_JSON = REPO_ROOT / "bench" / "results" / "priority.json"
PROBE_TASK = "bench.noop"
BULK_SECONDS = 0.01  # each bulk job awaits this long: the worker's slots stay busy
PROBE_INTERVAL_S = 0.02
WARMUP_PROBES = 5
PUSH_CHUNK = 10_000  # envelopes built and pushed at a time, to keep memory flat
GOAL = "within 2x of the idle figure"


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def start_worker(
    url: str, critical: str, bulk: str, concurrency: int, log: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "COROQ_REDIS_URL": url,
        "COROQ_LOG_FORMAT": "json",
        "COROQ_LOG_LEVEL": "warning",
        "COROQ_METRICS_PORT": "0",
    }
    command = [sys.executable, "-m", "worker", "--queues", f"{critical},{bulk}"]
    command += ["--concurrency", str(concurrency), "--tasks", "bench.tasks"]
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(worker: subprocess.Popen[bytes]) -> int:
    """SIGTERM drains the worker; one still running after 30 s is killed."""
    if worker.poll() is None:
        worker.terminate()
    try:
        return worker.wait(30)
    except subprocess.TimeoutExpired:
        worker.kill()
        return worker.wait()


def push_backlog(producer: Producer, bulk: str, jobs: int) -> None:
    for first in range(0, jobs, PUSH_CHUNK):
        count = min(PUSH_CHUNK, jobs - first)
        chunk = [JobEnvelope(task="sleep", args=[BULK_SECONDS]) for _ in range(count)]
        producer.push_many(chunk, queue=bulk)


def wait_until_busy(client: redis.Redis, bulk: QueueKeys, backlog: int, slots: int) -> None:
    """Until the worker has taken a few rounds of bulk jobs: it is up and every slot is busy."""
    deadline = time.monotonic() + 60
    while client.llen(bulk.ready) > backlog - 3 * slots:
        if time.monotonic() > deadline:
            raise RuntimeError("the worker took no bulk jobs within 60 s")
        time.sleep(0.05)


def probe(producer: Producer, critical: str, count: int) -> list[float]:
    """Push `count` no-op jobs on a fixed schedule; return each one's push-to-start in ms."""
    ids, next_at = [], time.monotonic()
    for _ in range(count):
        time.sleep(max(0.0, next_at - time.monotonic()))
        ids.append(producer.push(PROBE_TASK, _queue=critical))
        next_at += PROBE_INTERVAL_S
    records = producer.wait(ids, queue=critical, timeout=60)
    return [(records[i]["started_at"] - records[i]["enqueued_at"]) * 1000 for i in ids]


def run_phase(
    server_url: str, scratch: Path, name: str, backlog: int, args: argparse.Namespace
) -> dict[str, float]:
    tag = uuid.uuid4().hex[:8]
    critical, bulk = f"critical-{tag}", f"bulk-{tag}"
    client = redis.Redis.from_url(server_url)
    producer = Producer(server_url, client=client)
    push_backlog(producer, bulk, backlog)
    worker = start_worker(server_url, critical, bulk, args.concurrency, scratch / f"{name}.log")
    try:
        probe(producer, critical, WARMUP_PROBES)
        if backlog:
            wait_until_busy(client, QueueKeys(bulk), backlog, args.concurrency)
        latencies = probe(producer, critical, args.probes)
        # The list only shrinks: what waits now also waited as the last probe started.
        bulk_waiting = int(client.llen(QueueKeys(bulk).ready))
    finally:
        exit_code = stop(worker)
        producer.close()
    print(f"{name}: {len(latencies)} probes, worker exit {exit_code}", file=sys.stderr)
    return {
        "p50_ms": round(percentile(latencies, 0.5), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "max_ms": round(max(latencies), 2),
        "bulk_waiting_after_last_probe": bulk_waiting,
        "worker_exit_code": exit_code,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    # Entering the context starts the server (and its exit stops it): calling `.start()` as
    # well would start a second one on the same port and leave the first running.
    with tempfile.TemporaryDirectory() as scratch, RedisServerProcess() as server:
        backlog = run_phase(server.url, Path(scratch), "backlog", args.backlog, args)
        idle = run_phase(server.url, Path(scratch), "idle", 0, args)
    ratios = {
        f"ratio_{figure}": round(backlog[figure] / idle[figure], 2)
        for figure in ("p50_ms", "p99_ms", "max_ms")
    }
    for figure in ("p50_ms", "p99_ms", "max_ms"):
        print(f"{figure:8} backlog {backlog[figure]:>8}  idle {idle[figure]:>8}")
    for name, ratio in ratios.items():
        print(f"{name:14} {ratio}  goal: {GOAL}")
    print(f"bulk jobs waiting after the last probe: {backlog['bulk_waiting_after_last_probe']}")
    report = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "goal": GOAL,
        "result": {"backlog": backlog, "idle": idle, **ratios},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
