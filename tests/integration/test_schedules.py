"""Periodic jobs (DESIGN §7, docs/scheduling.md#periodic-jobs), against real worker processes:
each tick is pushed exactly once whatever the number of workers, through a SIGKILL and
restarts; missed ticks are skipped, or run once with catch_up; bad schedules stop the start."""

from __future__ import annotations

import itertools
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import redis

from producer.keys import QueueKeys
from tests.conftest import WorkerProcess, wait_for
from tests.integration.helpers import run_module

pytestmark = pytest.mark.slow  # they wait for ticks

TASKS = {"COROQ_TASKS": "tests.tasks,tests.schedule_tasks"}


def pushed(workers: list[WorkerProcess], schedule: str) -> Counter[str]:
    """How many times each tick's job was pushed, by all the workers together."""
    return Counter(
        event["job_id"]
        for worker in workers
        for event in worker.events("schedule.pushed")
        if event["schedule"] == schedule
    )


def tick_times(ids: Counter[str]) -> list[int]:
    return sorted(int(job_id.rsplit(":", 1)[1]) for job_id in ids)


def skipped_late(workers: list[WorkerProcess], schedule: str) -> set[int]:
    """The ticks (epoch ms) that a worker skipped and logged: reached later than half their
    period, as docs/scheduling.md says, which a loaded machine can make happen."""
    return {
        round(event["latest_tick"] * 1000)
        for worker in workers
        for event in worker.events("schedule.missed")
        if event["schedule"] == schedule and not event["pushed"]
    }


def test_three_workers_push_each_tick_once_through_a_sigkill(
    start_worker: Callable[..., WorkerProcess], redis_client: redis.Redis, keys: QueueKeys
) -> None:
    workers = [start_worker(env=TASKS) for _ in range(3)]
    time.sleep(3.2)
    workers[0].process.kill()  # mid-run, maybe as it pushes a tick
    workers.append(start_worker(env=TASKS))
    time.sleep(3.2)
    for worker in workers:
        worker.stop()
    counts = pushed(workers, "ticks.every_second")
    assert counts, "no tick was pushed"
    assert set(counts.values()) == {1}, counts  # never twice
    times = tick_times(counts)
    assert len(times) >= 5
    # No tick lost either: consecutive seconds from the first to the last, each pushed, or
    # skipped in the open (a tick no worker reached within half a second, on a busy machine).
    skipped = skipped_late(workers, "ticks.every_second")
    assert not skipped & set(times), (skipped, times)
    seen = sorted(set(times) | skipped)
    assert [b - a for a, b in itertools.pairwise(seen)] == [1000] * (len(seen) - 1)
    record = redis_client.hgetall(keys.job(f"schedule:ticks.every_second:{times[0]}"))
    assert record[b"status"] == b"succeeded"


def test_missed_ticks_are_skipped_or_run_once_with_catch_up(
    start_worker: Callable[..., WorkerProcess], redis_client: redis.Redis, keys: QueueKeys
) -> None:
    first = start_worker(env=TASKS)
    wait_for(lambda: pushed([first], "ticks.catching_up"), timeout=10)
    first.stop()
    time.sleep(4.5)  # two ticks of each schedule missed
    second = start_worker(env=TASKS)
    # At its start the worker runs the ticks' script for every schedule.
    wait_for(lambda: pushed([second], "ticks.catching_up"), timeout=10)
    missed = [e["schedule"] for e in second.events("schedule.missed")]
    assert "ticks.every_second" in missed  # skipped
    caught = pushed([second], "ticks.catching_up")
    assert len(caught) == 1  # run once, at the start, for the ticks missed
    [job_id] = caught
    wait_for(lambda: redis_client.hget(keys.job(job_id), "status") == b"succeeded")
    assert orjson.loads(redis_client.hget(keys.job(job_id), "result")) == "late"
    second.stop()


def test_a_schedules_table_with_a_six_field_cron_and_the_cli_listing(
    start_worker: Callable[..., WorkerProcess],
    redis_client: redis.Redis,
    redis_url: str,
    keys: QueueKeys,
) -> None:
    table = {"adder": {"task": "tests.add", "cron": "*/2 * * * * *", "args": [20, 22]}}
    worker = start_worker(env={"COROQ_SCHEDULES": orjson.dumps(table).decode()})
    wait_for(lambda: pushed([worker], "adder"), timeout=10)
    [job_id] = list(pushed([worker], "adder"))[:1]
    wait_for(lambda: redis_client.hget(keys.job(job_id), "result") == b"42")
    listing = run_module(
        "producer", "schedules", "-q", keys.queue, env={"COROQ_REDIS_URL": redis_url}
    )
    assert listing.returncode == 0, listing.stderr
    assert "adder" in listing.stdout
    assert "tests.add" in listing.stdout
    as_json = run_module(
        "producer", "schedules", "-q", keys.queue, "--json", env={"COROQ_REDIS_URL": redis_url}
    )
    [entry] = [orjson.loads(line) for line in as_json.stdout.splitlines()]
    assert entry["name"] == "adder"
    assert entry["next_run"] > time.time() - 1
    assert entry["last"]["job_id"].startswith("schedule:adder:")


def test_bad_schedules_stop_the_worker_with_exit_2(
    redis_url: str, keys: QueueKeys, tmp_path: Path
) -> None:
    env = {"COROQ_REDIS_URL": redis_url, "COROQ_QUEUES": keys.queue, "COROQ_METRICS_PORT": "0"}
    (tmp_path / "bad_cron_tasks.py").write_text(
        "from worker import task\n\n"
        "@task('reports.daily', cron='0 25 * * *')\n"
        "async def daily() -> None: ...\n"
    )
    bad_module = run_module(
        "worker",
        env={**env, "COROQ_TASKS": "bad_cron_tasks",
             "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
    )  # fmt: skip
    assert bad_module.returncode == 2
    assert "reports.daily" in bad_module.stderr
    assert "cron" in bad_module.stderr
    cases = [
        ({"x": {"task": "echo", "every": "0s"}}, "every"),
        ({"x": {"task": "echo", "cron": "0 9 * * *", "timezone": "Mars/Base"}}, "timezone"),
        ({"x": {"task": "no.such.task", "every": 5}}, "not registered"),
        ({"x": {"task": "echo", "every": 5, "queue": "elsewhere"}}, "not one this worker serves"),
        ({"x": {"task": "echo"}}, "cron= or every="),
    ]
    for table, message in cases:
        started = run_module("worker", env={**env, "COROQ_SCHEDULES": orjson.dumps(table).decode()})
        assert started.returncode == 2, (table, started.stderr)
        assert message in started.stderr, (table, started.stderr)
        assert len(started.stderr.strip().splitlines()) == 1, started.stderr
