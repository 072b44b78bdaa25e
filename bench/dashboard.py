"""The web dashboard's cost (`producer dashboard`, producer/dashboard): how fast the overview
page answers, and how many Redis commands an open page costs Redis.

    python bench/dashboard.py [--requests 200] [--duration 60] [--pages 5]
                              [--dead-letters 1000000] [--no-records] [--only large|small]
                              [--json PATH]

Starts a private redis-server on a free port and fills it twice, as workers and producers
leave it (no worker process runs: the figures are the dashboard's alone):
- large: 100 queues, each with 200 waiting and 20 delayed jobs, a throughput history (the hash
  the workers' heartbeats write, 61 minutes of counts) and, for 10 of them, 2 schedules; 50
  workers, each serving 2 queues, with their heartbeat keys (JSON as worker/process/
  heartbeat.py writes it, with a TTL longer than the run instead of a beat every 3 s, so that
  no beat adds to the count), their ids in `coroq:workers`, and a processing list holding 2
  jobs on each queue they serve; `--dead-letters` dead letters in one queue (entries made by
  the worker's own `dead_entry`, pipelined LPUSH of 10,000 at a time) and, unless
  `--no-records`, each one's job record, as the worker keeps it for a week: the keyspace the
  queue discovery's SCAN goes through.
- small: 3 queues, 4 workers serving all 3, 100 dead letters.

For each, `python -m producer dashboard` runs as a process (the default `--refresh`, 5 s), and:
1. Latency of the overview page `/`, `--requests` GETs one after another on one keep-alive
   connection, p50 and p99:
   - cached: from that process, once a first GET has read the overview; the dashboard serves
     what it keeps and reads it again in the background once it is as old as its read
     interval (`--refresh`, longer when a read costs more than `--redis-budget` commands a
     second), so every page after the first is served this way;
   - fresh: the same app in this process (create_app, aiohttp's TestServer), the kept overview
     dropped before each GET (`OverviewCache.forget`, as after an action, the only other time
     a page waits for a read): a read from Redis and a render each time; the queue discovery
     (SCAN) is done once a minute and not in these;
   - read only: `OverviewReader.read()` alone, in this process; and with the discovery (a new
     reader each time, fewer samples).
   The queue page and the dead-letter page of the largest queue are timed like `cached`.
2. The dashboard's own Redis load while pages are open: a fresh dashboard process, then one
   page (then `--pages` at once) opened as a browser does: a full GET of `/`, then every
   `data-refresh` seconds (what the page's script polls by) a GET with `X-Coroq-Fragment: 1`,
   for `--duration` seconds. Commands/s = the server's `total_commands_processed` delta over
   that window, less the one INFO that read the count at its start (nothing else talks to this
   server). The window holds the first read, with its discovery: what opening a page costs.
   Steady = the commands of one read (measured around a read in this process, without
   discovery; with it every minute at most) over the interval the dashboard spaces reads by
   (its pages' footer says it), what a page costs once open past the first read.
   Overview reads are counted by their SMEMBERS, discovery by SCANs.

Prints a table with the goals beside the figures (p99 <= 50 ms; <= 5 commands/s per open page)
and writes JSON (bench/results/dashboard.json). Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as `python bench/dashboard.py`
    sys.path.insert(0, str(REPO_ROOT))

import orjson  # noqa: E402
import redis  # noqa: E402
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from producer.connection import sync_client  # noqa: E402
from producer.dashboard import DashboardSettings, create_app  # noqa: E402
from producer.dashboard.overview import DISCOVER_EVERY, OverviewReader  # noqa: E402
from producer.dashboard.pages import STATE  # noqa: E402
from producer.history import HISTORY_TTL_S, MINUTES_KEPT, history_field, minute_of  # noqa: E402
from producer.keys import QueueKeys, workers_key  # noqa: E402
from worker.jobs.protocol import dead_entry  # noqa: E402
from worker.local_redis import RedisServerProcess, free_port  # noqa: E402

DEFAULT_JSON = REPO_ROOT / "bench" / "results" / "dashboard.json"
PREFIX = "coroq"
GOAL_P99_MS = 50.0
GOAL_COMMANDS_PER_S_PER_PAGE = 5.0
BATCH = 10_000  # dead letters per LPUSH
KEYS_TTL_MS = 6 * 3600 * 1000  # heartbeats outlive the run: no beat adds commands
DISCOVERY_SAMPLES = 10
RECORD_TTL_S = 7 * 24 * 3600
TRACEBACK_HEAD = 'Traceback (most recent call last):\n  File "tasks.py", line 42, in send\n'


@dataclass(frozen=True)
class Setup:
    name: str
    queues: int
    workers: int
    queues_per_worker: int
    ready_per_queue: int
    delayed_per_queue: int
    dead_letters: int
    scheduled_queues: int

    def queue_names(self) -> list[str]:
        return [f"{self.name}-q{n:03}" for n in range(self.queues)]


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def summary_ms(samples: list[float]) -> dict[str, float]:
    return {
        "samples": len(samples),
        "p50_ms": round(percentile(samples, 0.50) * 1000, 2),
        "p99_ms": round(percentile(samples, 0.99) * 1000, 2),
        "max_ms": round(max(samples) * 1000, 2),
    }


# -- filling Redis ----------------------------------------------------------------------------


def envelope(queue: str, n: int, rng: random.Random) -> bytes:
    return orjson.dumps(
        {
            "task": "mail.send",
            "id": f"{queue}-{n}-{rng.getrandbits(32):08x}",
            "args": [f"user{n}@example.com", {"template": "welcome", "locale": "en"}],
            "enqueued_at": time.time(),
        }
    )


def history_fields(now: float, rng: random.Random) -> dict[str, int]:
    last = minute_of(now)
    fields: dict[str, int] = {}
    for minute in range(last - MINUTES_KEPT + 1, last + 1):
        fields[history_field(minute, "ok")] = rng.randint(50, 500)
        fields[history_field(minute, "failed")] = rng.randint(0, 5)
    return fields


def fill_queues(client: redis.Redis, setup: Setup, rng: random.Random) -> None:
    now = time.time()
    pipe = client.pipeline(transaction=False)
    for index, queue in enumerate(setup.queue_names()):
        keys = QueueKeys(queue, PREFIX)
        ready = [envelope(queue, n, rng) for n in range(setup.ready_per_queue)]
        pipe.lpush(keys.ready, *ready)
        due = range(1, 1 + setup.delayed_per_queue)
        pipe.zadd(keys.delayed, {envelope(queue, -n, rng): (now + 60 * n) * 1000 for n in due})
        pipe.hset(keys.history, mapping=history_fields(now, rng))
        pipe.expire(keys.history, HISTORY_TTL_S)
        if index < setup.scheduled_queues:
            for name, cron in (("nightly-report", "0 3 * * *"), ("cleanup", "*/15 * * * *")):
                last = {"tick": now - 60, "job_id": f"{queue}-{name}", "pushed": True, "at": now}
                schedule = {
                    name: now + 900,
                    f"spec:{name}": orjson.dumps({"cron": cron, "task": name}),
                    f"last:{name}": orjson.dumps(last),
                }
                pipe.hset(keys.schedules, mapping=schedule)
    pipe.execute()


def put_workers(client: redis.Redis, setup: Setup, rng: random.Random) -> None:
    now = time.time()
    queues = setup.queue_names()
    pipe = client.pipeline(transaction=False)
    for n in range(setup.workers):
        worker = f"web{n % 10}-{4000 + n}-{rng.getrandbits(24):06x}"
        beat = {
            "host": f"web{n % 10}",
            "pid": 4000 + n,
            "started_at": now - 3600,
            "beat_at": now,
            "jobs_per_s": round(rng.uniform(0, 40), 2),
            "metrics_port": None,
        }
        for k in range(setup.queues_per_worker):
            keys = QueueKeys(queues[(n * setup.queues_per_worker + k) % len(queues)], PREFIX)
            pipe.set(keys.worker(worker), orjson.dumps(beat), px=KEYS_TTL_MS)
            running = [envelope(keys.queue, -job, rng) for job in range(2)]
            pipe.lpush(keys.processing(worker), *running)
        pipe.sadd(workers_key(PREFIX), worker)
    pipe.execute()


def put_dead_letters(client: redis.Redis, queue: str, count: int, records: bool) -> None:
    keys = QueueKeys(queue, PREFIX)
    reasons = ("handler_error", "timeout", "invalid_arguments")
    tasks = ("mail.send", "img.resize", "report.build")
    for start in range(0, count, BATCH):
        entries = []
        pipe = client.pipeline(transaction=False)
        for n in range(start, min(start + BATCH, count)):
            job_id = f"dead-{n:07}"
            task, reason = tasks[n % 3], reasons[n % 3]
            raw = orjson.dumps({"task": task, "id": job_id, "args": [n, f"user{n}@example.com"]})
            error = f"RuntimeError: upstream answered 503 for item {n}"
            entries.append(
                dead_entry(
                    job_id=job_id,
                    queue=queue,
                    task=task,
                    reason=reason,
                    error=error,
                    traceback=f"{TRACEBACK_HEAD}{error}",
                    attempts=3,
                    worker_id="web1-4242-9605e7",
                    raw=raw,
                )
            )
            if records:
                record = {"status": "dead", "reason": reason, "error": error, "attempts": 3}
                pipe.hset(keys.job(job_id), mapping={**record, "task": task})
                pipe.expire(keys.job(job_id), RECORD_TTL_S)
        pipe.lpush(keys.dead, *entries)
        pipe.execute()


def fill(client: redis.Redis, setup: Setup, records: bool) -> float:
    started = time.perf_counter()
    client.flushall()
    rng = random.Random(42)
    fill_queues(client, setup, rng)
    put_workers(client, setup, rng)
    put_dead_letters(client, setup.queue_names()[0], setup.dead_letters, records)
    return time.perf_counter() - started


# -- the dashboard process --------------------------------------------------------------------


class DashboardProcess:
    """`python -m producer dashboard` on a free port; stopped with SIGINT (killed after 10 s)."""

    def __init__(self, url: str, log: Path) -> None:
        self.port = free_port()
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "producer", "dashboard", "--port", str(self.port)),
                *("--redis-url", url, "--prefix", PREFIX),
            ],
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            cwd=REPO_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_listening()

    def _wait_listening(self) -> None:
        """Until it accepts connections: no request, so no Redis command, before we measure."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the dashboard exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the dashboard did not listen within 30 s")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._log.close()
        return code


def get(connection: http.client.HTTPConnection, path: str, fragment: bool = False) -> str:
    headers = {"Accept": "text/html"}
    if fragment:
        headers["X-Coroq-Fragment"] = "1"
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    body = response.read().decode()
    if response.status != 200:
        raise RuntimeError(f"GET {path}: {response.status} {body[:200]}")
    return body


def timed_gets(port: int, path: str, count: int) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    get(connection, path)  # the first read, and the connection made
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        get(connection, path)
        samples.append(time.perf_counter() - started)
    connection.close()
    return samples


# -- measuring in this process ----------------------------------------------------------------


def fresh_page_latencies(url: str, count: int) -> list[float]:
    """GET / on the app served in this process, the kept overview dropped before each."""
    client = sync_client(url)
    app = create_app(DashboardSettings(redis_url=url, prefix=PREFIX), client=client)

    async def run() -> list[float]:
        samples = []
        async with TestClient(TestServer(app)) as browser:
            await (await browser.get("/")).read()  # the discovery, done once a minute
            for _ in range(count):
                app[STATE].overview.forget()
                started = time.perf_counter()
                response = await browser.get("/", headers={"Accept": "text/html"})
                await response.read()
                samples.append(time.perf_counter() - started)
                if response.status != 200:
                    raise RuntimeError(f"GET /: {response.status}")
        return samples

    try:
        return asyncio.run(run())
    finally:
        client.close()


def commands_so_far(client: redis.Redis) -> int:
    return int(client.info("stats")["total_commands_processed"])


def command_calls(client: redis.Redis, name: str) -> int:
    return int(client.info("commandstats").get(f"cmdstat_{name}", {}).get("calls", 0))


def reader_figures(url: str, count: int, counter: redis.Redis) -> dict[str, Any]:
    client = sync_client(url)
    try:
        reader = OverviewReader(client, PREFIX)
        reader.read()
        samples = []
        for _ in range(count):
            started = time.perf_counter()
            reader.read()
            samples.append(time.perf_counter() - started)
        before = commands_so_far(counter)
        counted = reader.read().commands
        commands = commands_so_far(counter) - before - 1  # less the INFO that read `before`
        with_discovery = []
        for _ in range(DISCOVERY_SAMPLES):
            started = time.perf_counter()
            first = OverviewReader(client, PREFIX).read()
            with_discovery.append(time.perf_counter() - started)
        return {
            "read": summary_ms(samples),
            "read_with_discovery": summary_ms(with_discovery),
            "commands_per_read": commands,
            "commands_per_read_as_counted_by_the_reader": counted,
            "commands_per_read_with_discovery": first.commands,
        }
    finally:
        client.close()


# -- open pages -------------------------------------------------------------------------------


def browse(
    port: int, duration: float, polls: list[int], refresh: list[float], reads: list[float]
) -> None:
    """One open page: the full page, then a fragment every `data-refresh` seconds."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    opened = time.monotonic()
    page = get(connection, "/")
    found = re.search(r'data-refresh="(\d+)"', page)
    every = max(1, int(found.group(1))) if found else 5
    refresh.append(every)
    read_every = re.search(r"counts read from Redis every (\d+) s", page)
    if read_every:
        reads.append(float(read_every.group(1)))
    tick = opened + every
    while tick < opened + duration:
        time.sleep(max(0.0, tick - time.monotonic()))
        get(connection, "/", fragment=True)
        polls.append(1)
        tick += every
    time.sleep(max(0.0, opened + duration - time.monotonic()))
    connection.close()


def open_pages(url: str, pages: int, duration: float, log: Path) -> dict[str, Any]:
    counter = redis.Redis.from_url(url)
    dashboard = DashboardProcess(url, log)
    try:
        reads, scans = command_calls(counter, "smembers"), command_calls(counter, "scan")
        before = commands_so_far(counter)
        started = time.monotonic()
        polls: list[int] = []
        refresh: list[float] = []
        read_every: list[float] = []
        browsers = [
            threading.Thread(
                target=browse, args=(dashboard.port, duration, polls, refresh, read_every)
            )
            for _ in range(pages)
        ]
        for browser in browsers:
            browser.start()
        for browser in browsers:
            browser.join()
        elapsed = time.monotonic() - started
        commands = commands_so_far(counter) - before - 1  # less the INFO that read `before`
        reads = command_calls(counter, "smembers") - reads
        scans = command_calls(counter, "scan") - scans
    finally:
        exit_code = dashboard.stop()
        counter.close()
    return {
        "pages": pages,
        "window_s": round(elapsed, 1),
        "data_refresh_s": max(refresh) if refresh else None,
        "read_every_s": max(read_every) if read_every else None,
        "fragment_polls": len(polls),
        "overview_reads": reads,
        "discovery_scans": scans,
        "commands": commands,
        "commands_per_s": round(commands / elapsed, 2),
        "commands_per_s_per_page": round(commands / elapsed / pages, 2),
        "dashboard_exit_code": exit_code,
    }


# -- one setup --------------------------------------------------------------------------------


def measure(
    server: RedisServerProcess, setup: Setup, args: argparse.Namespace, log: Path
) -> dict[str, Any]:
    counter = redis.Redis.from_url(server.url)
    print(f"[{setup.name}] filling Redis", file=sys.stderr)
    fill_s = fill(counter, setup, records=not args.no_records)
    result: dict[str, Any] = {
        "setup": asdict(setup),
        "fill_s": round(fill_s, 1),
        "keys": counter.dbsize(),
        "used_memory_mb": round(int(counter.info("memory")["used_memory"]) / 2**20),
    }
    print(f"[{setup.name}] latency", file=sys.stderr)
    dashboard = DashboardProcess(server.url, log)
    try:
        biggest = setup.queue_names()[0]
        result["latency"] = {
            "overview_cached": summary_ms(timed_gets(dashboard.port, "/", args.requests)),
            "queue_page": summary_ms(timed_gets(dashboard.port, f"/queues/{biggest}", 50)),
            "dead_page": summary_ms(timed_gets(dashboard.port, f"/queues/{biggest}/dead", 50)),
        }
    finally:
        result["latency_dashboard_exit_code"] = dashboard.stop()
    result["latency"]["overview_fresh"] = summary_ms(
        fresh_page_latencies(server.url, args.requests)
    )
    result["reader"] = reader_figures(server.url, args.requests, counter)
    loads = []
    for pages in (1, args.pages):
        print(f"[{setup.name}] {pages} open page(s), {args.duration:.0f} s", file=sys.stderr)
        loads.append(open_pages(server.url, pages, args.duration, log))
    result["load"] = loads
    result["steady_commands_per_s"] = steady_commands_per_s(result["reader"], loads)
    counter.close()
    return result


def steady_commands_per_s(reader: dict[str, Any], loads: list[dict[str, Any]]) -> float | None:
    """Once pages are open: a read every read interval, and the discovery with the first read
    a minute after the last one (so with every read, past a minute apart)."""
    interval = max(load["read_every_s"] or 0 for load in loads)
    if not interval:
        return None
    per_read = reader["commands_per_read"]
    discovery = reader["commands_per_read_with_discovery"] - per_read
    return round(per_read / interval + discovery / max(interval, DISCOVER_EVERY), 2)


def print_table(results: list[dict[str, Any]]) -> None:
    rows: list[tuple[str, str, str]] = []
    for result in results:
        name = result["setup"]["name"]
        latency = result["latency"]
        for what, label in (
            ("overview_cached", "GET / (kept overview)"),
            ("overview_fresh", "GET / (read from Redis)"),
            ("queue_page", "GET /queues/<largest>"),
            ("dead_page", "GET /queues/<largest>/dead"),
        ):
            figures = latency[what]
            rows.append(
                (
                    f"{name}: {label} p50 / p99",
                    f"{figures['p50_ms']} / {figures['p99_ms']} ms",
                    f"p99 <= {GOAL_P99_MS:.0f} ms",
                )
            )
        reader = result["reader"]
        rows.append(
            (
                f"{name}: OverviewReader.read() p50 / p99",
                f"{reader['read']['p50_ms']} / {reader['read']['p99_ms']} ms",
                "",
            )
        )
        rows.append(
            (
                f"{name}: read with discovery p50 / max",
                f"{reader['read_with_discovery']['p50_ms']} / "
                f"{reader['read_with_discovery']['max_ms']} ms",
                "",
            )
        )
        rows.append(
            (
                f"{name}: commands per read (with discovery)",
                f"{reader['commands_per_read']} ({reader['commands_per_read_with_discovery']})",
                "",
            )
        )
        for load in result["load"]:
            rows.append(
                (
                    f"{name}: {load['pages']} page(s) open {load['window_s']:.0f} s, per page",
                    f"{load['commands_per_s_per_page']} commands/s "
                    f"({load['commands']} commands, {load['overview_reads']} reads, "
                    f"read every {load['read_every_s']} s)",
                    f"<= {GOAL_COMMANDS_PER_S_PER_PAGE:.0f}",
                )
            )
        rows.append(
            (
                f"{name}: steady, per read interval",
                f"{result['steady_commands_per_s']} commands/s",
                f"<= {GOAL_COMMANDS_PER_S_PER_PAGE:.0f}",
            )
        )
    width = max(len(row[0]) for row in rows)
    value_width = max(len(row[1]) for row in rows)
    print(f"{'measure':{width}}  {'figure':{value_width}}  goal")
    for what, figure, goal in rows:
        print(f"{what:{width}}  {figure:{value_width}}  {goal}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="GETs per latency figure")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds pages stay open")
    parser.add_argument("--pages", type=int, default=5, help="pages open at once, second run")
    parser.add_argument("--dead-letters", type=int, default=1_000_000)
    parser.add_argument("--no-records", action="store_true", help="no job record per dead letter")
    parser.add_argument("--only", choices=("large", "small"))
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    setups = [
        Setup("large", 100, 50, 2, 200, 20, args.dead_letters, 10),
        Setup("small", 3, 4, 3, 20, 5, 100, 1),
    ]
    results = []
    with tempfile.TemporaryDirectory() as scratch, RedisServerProcess() as server:
        log = Path(scratch) / "dashboard.log"
        for setup in setups:
            if args.only in (None, setup.name):
                results.append(measure(server, setup, args, log))
        problems = [
            line
            for line in log.read_text(errors="replace").splitlines()
            if "error" in line.lower() or "Traceback" in line
        ]
    print_table(results)
    report = {
        "args": {name: str(value) for name, value in vars(args).items()},
        "goals": {"p99_ms": GOAL_P99_MS, "commands_per_s_per_page": GOAL_COMMANDS_PER_S_PER_PAGE},
        "results": results,
        "dashboard_log_problems": problems,
    }
    if problems:
        print(f"dashboard log problems: {problems[:5]}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
