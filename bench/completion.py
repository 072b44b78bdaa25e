"""Jobs as futures: how fast a producer hears that a job ended, what waiting costs Redis, and
how fast a cancel reaches a running job (docs/futures.md).

    python bench/completion.py [--jobs 300] [--pending 10000] [--cancels 30] [--rounds 3]
                               [--peers arq,saq,celery] [--json PATH]

Starts a private redis-server on a free port and one real worker process (`python -m worker
--concurrency 100 --tasks bench.tasks`), then per round:

1. **completion, idle**: `--jobs` jobs `bench.stamp`, one at a time: `await p.submit(...)`,
   then `await job`. The task returns `time.time()` as its last statement; the latency is the
   moment the future resolves minus that value (same machine, same clock). It covers the
   outcome's write (the ack script, with its PUBLISH), the listener's wake-up and its HGETALL.
2. **completion, with N pending**: the same, while the producer also waits on `--pending`
   futures of jobs that will not run during the round (delayed by an hour).
3. **cost of waiting**: Redis commands per second over 10 s while the producer waits on those
   N futures and the worker idles, minus the same idle worker's commands without any waiting
   producer (both read from `INFO stats` `total_commands_processed`, one `INFO` each end).
4. **cancel**: `--cancels` times, a running `bench.cancellable` job (it awaits an hour) is
   cancelled with `await p.cancel(id)`; the latency is from just before the call to the
   moment the handler's `except CancelledError` takes the time (it writes it to a file).

With `--peers`, each round also measures the peers' completion latency, idle, the way their
users wait for a result: arq's `await job.result()` (it polls every 0.5 s, its default), SAQ's
`job.refresh(until_complete=...)`, Celery's `AsyncResult.get()` with a Redis result backend.
Each peer runs its own worker (`bench/peers/<peer>_peer.py worker`, in `bench/.venvs/<peer>`,
made from its pins when missing) and the same job: return `time.time()`.

Prints medians over rounds with [min-max] and writes JSON (bench/results/completion.json).
Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as `python bench/completion.py`
    sys.path.insert(0, str(REPO_ROOT))

import orjson  # noqa: E402
import redis  # noqa: E402

from bench.comparison.processes import spawn, stop  # noqa: E402
from bench.comparison.systems import (  # noqa: E402
    BY_NAME,
    PEERS_DIR,
    Launcher,
    ensure_venv,
    venv_python,
)
from producer import AsyncProducer  # noqa: E402
from producer.envelope import build_envelope  # noqa: E402
from worker.local_redis import RedisServerProcess  # noqa: E402

DEFAULT_JSON = REPO_ROOT / "bench" / "results" / "completion.json"
IDLE_WINDOW_S = 10.0


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def start_worker(url: str, queue: str, marks: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "COROQ_REDIS_URL": url,
        "COROQ_QUEUES": queue,
        "COROQ_TASKS": "bench.tasks",
        "COROQ_CONCURRENCY": "100",
        "COROQ_LOG_LEVEL": "warning",
        "COROQ_LOG_FORMAT": "json",
        "COROQ_METRICS_PORT": "0",
        "BENCH_CANCEL_MARKS": str(marks),
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "worker"], env=env, stdout=out, stderr=subprocess.STDOUT
        )


async def completion_latencies(p: AsyncProducer, jobs: int) -> list[float]:
    samples = []
    for _ in range(jobs):
        job = await p.submit("bench.stamp")
        returned_at = await job
        samples.append((time.time() - float(returned_at)) * 1000)
    return samples


async def cancel_latencies(p: AsyncProducer, count: int, marks: Path) -> list[float]:
    samples = []
    for _ in range(count):
        job = await p.submit("bench.cancellable", job_marker := uuid.uuid4().hex)
        # Polled: the benchmark must see the job running before it cancels it.
        while (await p.status(job.id) or {}).get("status") != "running":  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.01)  # inside its handler's await by now
        asked_at = time.time()
        await p.cancel(job.id)
        seen_at = await _cancel_mark(marks, job_marker)
        samples.append((seen_at - asked_at) * 1000)
        await asyncio.wait({job}, timeout=10)
    return samples


async def _cancel_mark(marks: Path, marker: str) -> float:
    # A few hundred bytes of a local file, read after the time was taken: no need for a thread.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if marks.exists():  # noqa: ASYNC240
            for line in marks.read_text().splitlines():  # noqa: ASYNC240
                name, _, when = line.partition(" ")
                if name == marker:
                    return float(when)
        await asyncio.sleep(0.002)
    raise RuntimeError(f"the handler of {marker} never saw its cancel")


def commands(client: redis.Redis) -> int:
    return int(client.info("stats")["total_commands_processed"])


async def commands_per_second(client: redis.Redis) -> float:
    before = commands(client)
    await asyncio.sleep(IDLE_WINDOW_S)
    return (commands(client) - before - 1) / IDLE_WINDOW_S  # the INFO itself counts once


async def one_round(url: str, queue: str, args: argparse.Namespace, marks: Path) -> dict[str, Any]:
    client = redis.Redis.from_url(url)
    try:
        idle_worker_rate = await commands_per_second(client)
        async with AsyncProducer(url, queue=queue) as p:
            idle = await completion_latencies(p, args.jobs)
            later = [
                build_envelope("bench.stamp", (), {}, job_id=f"later-{uuid.uuid4().hex}")
                for _ in range(args.pending)
            ]
            ids = await p.push_many(later, delay=3600)
            pending = [p.job(job_id) for job_id in ids]
            await asyncio.sleep(1.0)  # every wait marked
            loaded = await completion_latencies(p, args.jobs)
            waiting_rate = await commands_per_second(client)
            cancels = await cancel_latencies(p, args.cancels, marks)
            assert not any(job.done() for job in pending)
            client.delete(f"coroq:{{{queue}}}:delayed")
        for job in pending:  # ended by the producer's close (ProducerClosed): seen, not logged
            job.exception()
        return {
            "idle_p50_ms": percentile(idle, 0.5),
            "idle_p99_ms": percentile(idle, 0.99),
            "pending_p50_ms": percentile(loaded, 0.5),
            "pending_p99_ms": percentile(loaded, 0.99),
            "waiting_commands_per_s": waiting_rate - idle_worker_rate,
            "cancel_p50_ms": percentile(cancels, 0.5),
            "cancel_p99_ms": percentile(cancels, 0.99),
        }
    finally:
        client.close()


def peer_latencies(peer: str, url: str, jobs: int, workdir: Path, number: int) -> dict[str, float]:
    """Start the peer's worker, have its adapter wait on `jobs` results one at a time."""
    system = BY_NAME[peer]
    assert system.venv is not None
    assert system.adapter is not None
    ensure_venv(system.venv, workdir / f"venv-{peer}.log")
    launcher = Launcher(url, workdir)
    queue = f"completion-{peer}-{uuid.uuid4().hex[:8]}"
    env = launcher.env(system, queue, 100, workdir / f"marks-{peer}") | {"BENCH_RESULTS": "1"}
    worker = spawn(
        launcher.worker_args(system, queue, 100), env, workdir, workdir / f"{peer}-{number}.log"
    )
    try:
        time.sleep(3.0)  # started
        adapter = [
            str(venv_python(system.venv)),
            str(PEERS_DIR / system.adapter),
        ]
        done = subprocess.run(
            [*adapter, "completion", "--count", str(jobs)],
            env=env, cwd=workdir, capture_output=True, text=True, timeout=900, check=True,
        )  # fmt: skip
    finally:
        stop(worker)
    samples = orjson.loads(done.stdout.strip().splitlines()[-1])["samples"]
    return {"idle_p50_ms": percentile(samples, 0.5), "idle_p99_ms": percentile(samples, 0.99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--cancels", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peers", default="", help="comma-separated: arq,saq,celery")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    rounds = []
    with tempfile.TemporaryDirectory() as scratch, RedisServerProcess() as server:
        marks = Path(scratch) / "cancel-marks"
        for number in range(args.rounds):
            queue = f"completion-{uuid.uuid4().hex[:8]}"
            worker = start_worker(server.url, queue, marks, Path(scratch) / f"worker-{number}.log")
            try:
                time.sleep(2.0)  # started
                rounds.append(asyncio.run(one_round(server.url, queue, args, marks)))
            finally:
                worker.terminate()
                worker.wait(30)
            for peer in filter(None, args.peers.split(",")):
                figures = peer_latencies(peer, server.url, args.jobs, Path(scratch), number)
                rounds[-1] |= {f"{peer}_{name}": value for name, value in figures.items()}
            print(f"round {number + 1}: {rounds[-1]}", flush=True)
    summary = {
        name: {
            "median": statistics.median(r[name] for r in rounds),
            "min": min(r[name] for r in rounds),
            "max": max(r[name] for r in rounds),
        }
        for name in rounds[0]
    }
    for name, figures in summary.items():
        print(f"{name:26} {figures['median']:9.3f}  [{figures['min']:.3f} - {figures['max']:.3f}]")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_bytes(
        orjson.dumps(
            {"args": vars(args) | {"json": str(args.json)}, "rounds": rounds, "summary": summary},
            option=orjson.OPT_INDENT_2,
        )
    )


if __name__ == "__main__":
    main()
