"""`producer push --delay/--at --wait` in a subprocess, against the real worker.

The worker is told to look every 0.5 s when idle (`COROQ_POLL_TIMEOUT`), so a delayed job
falls due while it waits. Nothing here asserts how long anything took, only the order of
the timestamps in the job's record.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import redis

from producer import Producer
from producer.keys import QueueKeys
from tests.conftest import WorkerProcess
from tests.integration.helpers import record, run_module

IDLE_POLL = {"COROQ_POLL_TIMEOUT": "0.5"}


@pytest.fixture
def push(redis_url: str, keys: QueueKeys) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_module(
            "producer", "push", *args, "--queue", keys.queue, env={"COROQ_REDIS_URL": redis_url}
        )

    return run


def job_file(tmp_path: Path, *jobs: dict[str, object]) -> str:
    path = tmp_path / "job.json"
    path.write_bytes(orjson.dumps(jobs[0] if len(jobs) == 1 else list(jobs)))
    return str(path)


def test_a_delayed_job_starts_no_earlier_than_its_delay_and_wait_reports_success(
    push: Callable[..., subprocess.CompletedProcess[str]],
    start_worker: Callable[..., WorkerProcess],
    redis_client: redis.Redis,
    keys: QueueKeys,
    tmp_path: Path,
) -> None:
    start_worker(env=IDLE_POLL)
    result = push(
        job_file(tmp_path, {"task": "tests.add", "args": [2, 3]}), "--delay", "1s", "--wait"
    )
    assert result.returncode == 0, result.stderr
    [job_id] = result.stdout.split()
    assert "1 succeeded, 0 dead" in result.stderr.splitlines()
    found = record(redis_client, keys, job_id)
    assert found["status"] == "succeeded"
    assert found["result"] == 5
    assert found["started_at"] - found["enqueued_at"] >= 1
    assert redis_client.zcard(keys.delayed) == 0


def test_a_job_that_dies_is_reported_and_the_exit_code_is_1(
    push: Callable[..., subprocess.CompletedProcess[str]],
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    start_worker(env=IDLE_POLL)
    jobs = job_file(
        tmp_path,
        {"task": "tests.add", "args": [1, 1], "id": "fine"},
        {"task": "tests.boom", "args": ["kaput"], "max_attempts": 1, "id": "doomed"},
    )
    result = push(jobs, "--wait")
    assert result.returncode == 1, result.stderr
    assert result.stdout.split() == ["fine", "doomed"]
    lines = result.stderr.splitlines()
    assert "1 succeeded, 1 dead" in lines
    [dead_line] = [line for line in lines if line.startswith("dead: ")]
    assert dead_line.startswith("dead: doomed handler_error: ")
    assert "kaput" in dead_line


def test_wait_times_out_with_exit_3_when_no_worker_runs(
    push: Callable[..., subprocess.CompletedProcess[str]],
    redis_client: redis.Redis,
    keys: QueueKeys,
    tmp_path: Path,
) -> None:
    result = push(job_file(tmp_path, {"task": "echo"}), "--wait", "--timeout", "1s")
    assert result.returncode == 3, result.stderr
    assert len(result.stdout.split()) == 1  # the id is printed before the wait
    assert "timed out after 1s: 1 of 1 job(s) still pending" in result.stderr
    assert redis_client.llen(keys.ready) == 1  # the job stays pushed


def test_at_in_the_past_runs_at_once_and_the_api_waits_for_it(
    producer: Producer, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker(env=IDLE_POLL)
    past = producer.push("tests.add", 1, 2, _at=datetime.now(UTC) - timedelta(hours=1))
    later = producer.push("tests.add", 3, 4, _delay=timedelta(milliseconds=300))
    records = producer.wait([past, later])
    assert {job_id: found["result"] for job_id, found in records.items()} == {past: 3, later: 7}
    assert records[later]["started_at"] - records[later]["enqueued_at"] >= 0.3
