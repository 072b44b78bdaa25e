"""Recovery after a worker is killed: how long after a SIGKILL the job its worker was running
starts again on a live worker, with the default heartbeat and reaper settings, and what an
idle worker costs Redis for that (docs/reliability.md#recovery-time).

    python bench/recovery.py [--workers 2] [--kills 20] [--idle-seconds 30] [--json PATH]

Starts a private redis-server on a free port and real worker processes given no heartbeat or
reaper setting: the defaults (a beat every 3 s, a liveness of 6.5 s, a look for lost workers
every 3 s) promise that the jobs of a dead worker run again within 9.5 s of its last beat, so
within 10 s of the kill. First, one worker alone and idle for `--idle-seconds`: the Redis
commands a second it sends (`CONFIG RESETSTAT` as the window opens, one `INFO` as it closes:
`total_commands_processed` without the reset itself, and the calls of each command). Then
`--workers` workers (at least 2) run, and `--kills` times: push one `tests.nap` of 60 s, wait
until its record says `running`, SIGKILL the worker the record names, and poll the record until
the job's second start (`attempts` 2) on a live worker. Recovery is that start's `started_at`
(the Redis server's clock, read by the start script) minus `time.time()` right after the kill,
same machine, same clock; `after_last_beat_s` is the same start minus the `beat_at` left in
the killed worker's liveness key (where the 9.5 s bound counts from). The job is then
cancelled, so that it holds no slot, and only then a replacement worker starts: recovery is
measured on the workers already running, neither helped nor slowed by one starting up. A
random pause of up to 3 s (one beat) before each push and each replacement spreads the kills
over the beat and reaper cycles, as kills from outside would fall.

Prints p50, p90 and the worst recovery, every one of them, the idle commands a second with
their breakdown, the workers' exit codes (-9 for each killed one) and their error log lines;
writes JSON (bench/results/recovery.json). Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as `python bench/recovery.py`
    sys.path.insert(0, str(REPO_ROOT))

import orjson  # noqa: E402
import redis  # noqa: E402

from bench.worker_processes import spawn_worker  # noqa: E402
from producer import Producer  # noqa: E402
from producer.keys import QueueKeys  # noqa: E402
from producer.statuses import FINAL_STATUSES, JobStatus  # noqa: E402
from worker.local_redis import RedisServerProcess  # noqa: E402

DEFAULT_JSON = REPO_ROOT / "bench" / "results" / "recovery.json"
TASK = "tests.nap"
NAP_S = 60  # far longer than a recovery: the job still runs when its worker is killed
GOALS = {"recovery_s_max": "within 10 s", "after_last_beat_s_max": "within 9.5 s"}
POLL_S = 0.02
# The defaults' beat and reaper period. A pause of a random part of it before each push and
# each replacement puts the kills at every point of the victim's beat cycle and the reapers at
# every offset from it, not at the one point the loop's own rhythm would lock onto.
CYCLE_S = 3.0
STARTED_TIMEOUT_S = 30.0
RUNNING_TIMEOUT_S = 30.0
# Six times the promise: a job not started again by then is counted, not waited for forever.
RECOVERY_TIMEOUT_S = 60.0
# The worker's start-up commands (its first beat, its first look at the queue) fall before
# the idle window opens.
IDLE_SETTLE_S = 1.0

Record = dict[str, str]


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def start_worker(url: str, queue: str, log: Path) -> subprocess.Popen[bytes]:
    # No COROQ_HEARTBEAT_* nor COROQ_REAPER_INTERVAL: the defaults are what is measured.
    settings = {
        "COROQ_TASKS": "tests.tasks",
        "COROQ_REDIS_URL": url,
        "COROQ_QUEUES": queue,
    }
    return spawn_worker(settings, log)


def wait_started(process: subprocess.Popen[bytes], log: Path) -> str:
    """The worker id from the `worker.started` log line, once the worker has written it."""
    deadline = time.monotonic() + STARTED_TIMEOUT_S
    while time.monotonic() < deadline:
        for line in log.read_bytes().splitlines():
            if b"worker.started" in line:
                worker_id: str = orjson.loads(line)["worker_id"]
                return worker_id
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"a worker exited with {process.returncode} at start:\n{tail}")
        time.sleep(POLL_S)
    raise RuntimeError(f"a worker did not log worker.started within {STARTED_TIMEOUT_S} s")


class Workers:
    """The worker processes: the live ones by worker id, and every one started (the killed
    ones too), in order, for the exit codes and the logs."""

    def __init__(self, url: str, queue: str, log_dir: Path) -> None:
        self.url = url
        self.queue = queue
        self.log_dir = log_dir
        self.live: dict[str, subprocess.Popen[bytes]] = {}
        self.started: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def start(self) -> str:
        log = self.log_dir / f"worker-{len(self.logs)}.log"
        process = start_worker(self.url, self.queue, log)
        self.started.append(process)  # before waiting: stop() reaches it whatever happens
        self.logs.append(log)
        worker_id = wait_started(process, log)
        self.live[worker_id] = process
        return worker_id

    def kill(self, worker_id: str) -> float:
        """SIGKILL the worker; returns `time.time()` right after the signal was sent."""
        process = self.live.pop(worker_id)
        process.kill()
        killed_at = time.time()
        process.wait()
        return killed_at

    def stop(self) -> list[int]:
        """SIGTERM drains a worker; one still running after 30 s is killed. Returns the exit
        codes of every worker started, in order."""
        for process in self.started:
            if process.poll() is None:
                process.terminate()
        for process in self.started:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return [process.returncode for process in self.started]


def wait_for_record(
    client: redis.Redis, key: str, reached: Callable[[Record], bool], timeout: float
) -> Record | None:
    """The job record once `reached` holds for it; None if it did not within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record: Record = client.hgetall(key)
        if reached(record):
            return record
        time.sleep(POLL_S)
    return None


def started_again(record: Record) -> bool:
    return record.get("status") == JobStatus.RUNNING and int(record.get("attempts", 0)) >= 2


def last_beat(client: redis.Redis, keys: QueueKeys, worker_id: str) -> float | None:
    """`beat_at` in the killed worker's liveness key: read after its death, so no beat can
    follow it. None if the key is gone."""
    liveness = client.get(keys.worker(worker_id))
    return None if liveness is None else float(orjson.loads(liveness)["beat_at"])


def kill_and_rerun(
    number: int, producer: Producer, client: redis.Redis, keys: QueueKeys, workers: Workers
) -> dict[str, Any]:
    """One kill: push a long job, SIGKILL the worker running it, wait for its second start,
    cancel it, and start a replacement worker."""
    time.sleep(random.uniform(0, CYCLE_S))
    job_id = producer.push(TASK, NAP_S, f"k{number}")
    key = keys.job(job_id)
    running = wait_for_record(
        client,
        key,
        lambda record: record.get("status") == JobStatus.RUNNING and bool(record.get("worker")),
        RUNNING_TIMEOUT_S,
    )
    if running is None:
        raise RuntimeError(f"job {job_id} did not start within {RUNNING_TIMEOUT_S} s")
    victim = running["worker"]
    killed_at = workers.kill(victim)
    beat_at = last_beat(client, keys, victim)
    rerun = wait_for_record(client, key, started_again, RECOVERY_TIMEOUT_S)
    producer.cancel(job_id)  # else the nap would hold a slot of the live worker for 60 s
    wait_for_record(client, key, lambda record: record.get("status") in FINAL_STATUSES, 30.0)
    time.sleep(random.uniform(0, CYCLE_S))
    workers.start()
    started_at = None if rerun is None else float(rerun["started_at"])
    return {
        "kill": number,
        "job_id": job_id,
        "killed_worker": victim,
        "recovered_on": None if rerun is None else rerun["worker"],
        "recovery_s": None if started_at is None else round(started_at - killed_at, 3),
        "after_last_beat_s": (
            None if started_at is None or beat_at is None else round(started_at - beat_at, 3)
        ),
    }


def idle_commands(client: redis.Redis, seconds: float) -> tuple[float, dict[str, int]]:
    """Commands a second that the server received over the window, and the calls of each
    command. Ours are left out: the reset is counted after it ran, the INFO after its reply."""
    client.config_resetstat()
    opened = time.monotonic()
    time.sleep(seconds)
    info = client.info("all")
    elapsed = time.monotonic() - opened
    commands = info["total_commands_processed"] - 1  # the CONFIG RESETSTAT
    calls = {
        name.removeprefix("cmdstat_"): int(stats["calls"])
        for name, stats in info.items()
        if name.startswith("cmdstat_") and not name.startswith("cmdstat_config")
    }
    by_calls = dict(sorted(calls.items(), key=lambda item: item[1], reverse=True))
    return round(commands / elapsed, 2), by_calls


def error_lines(logs: list[Path]) -> int:
    """Error and critical lines the workers logged (none expected; a SIGKILL logs nothing)."""
    levels = (b'"level":"error"', b'"level":"critical"')
    lines = (line for log in logs for line in log.read_bytes().splitlines())
    return sum(1 for line in lines if any(level in line for level in levels))


def spread(name: str, samples: list[float]) -> dict[str, Any]:
    if not samples:
        return {f"{name}_p50": None, f"{name}_p90": None, f"{name}_max": None}
    return {
        f"{name}_p50": round(percentile(samples, 0.5), 3),
        f"{name}_p90": round(percentile(samples, 0.9), 3),
        f"{name}_max": round(max(samples), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="at least 2")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    if args.workers < 2:
        parser.error("--workers must be at least 2: a killed worker's job needs a live one")
    queue = f"recovery-{uuid.uuid4().hex[:8]}"
    keys = QueueKeys(queue)
    # Entering the context starts the server (and its exit stops it): calling `.start()` as
    # well would start a second one on the same port and leave the first running.
    with tempfile.TemporaryDirectory() as scratch, RedisServerProcess() as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        producer = Producer(server.url, queue=queue)
        workers = Workers(server.url, queue, Path(scratch))
        try:
            workers.start()
            time.sleep(IDLE_SETTLE_S)
            idle_per_s, idle_calls = idle_commands(client, args.idle_seconds)
            while len(workers.live) < args.workers:
                workers.start()
            kills = []
            for number in range(1, args.kills + 1):
                kills.append(kill_and_rerun(number, producer, client, keys, workers))
                print(f"kill {number}: recovery {kills[-1]['recovery_s']} s", file=sys.stderr)
        finally:
            exit_codes = workers.stop()
            producer.close()
            client.close()
        errors = error_lines(workers.logs)
    recoveries = [kill["recovery_s"] for kill in kills if kill["recovery_s"] is not None]
    after_beats = [
        kill["after_last_beat_s"] for kill in kills if kill["after_last_beat_s"] is not None
    ]
    result = {
        "workers": args.workers,
        "kills": args.kills,
        **spread("recovery_s", recoveries),
        "recovery_s_all": recoveries,
        "after_last_beat_s_max": max(after_beats, default=None),
        "not_recovered": sum(1 for kill in kills if kill["recovery_s"] is None),
        "idle_seconds": args.idle_seconds,
        "idle_commands_per_s": idle_per_s,
        "idle_calls_by_command": idle_calls,
        "worker_exit_codes": exit_codes,
        "worker_error_lines": errors,
    }
    for name, value in result.items():
        goal = f"  goal: {GOALS[name]}" if name in GOALS else ""
        print(f"{name:21} {value}{goal}")
    report = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "goals": GOALS,
        "result": result,
        "per_kill": kills,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
