"""The worker's output is JSON lines; lines inside a job carry its context; no password leaks."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from producer import Producer
from producer.keys import QueueKeys
from tests.conftest import wait_for
from tests.integration.helpers import run_module
from worker.local_redis import RedisServerProcess, free_port

PASSWORD = "s3cret-pw"
JOB_CONTEXT = ("job_id", "task", "queue", "attempt")


@pytest.fixture
def password_redis() -> Iterator[RedisServerProcess]:
    """A redis-server of its own that wants a password.

    The password is set once the server answers: `RedisServerProcess` waits for an
    unauthenticated PING, which a server started with `--requirepass` never gives (see
    `test_local_redis_server_started_with_a_password_is_seen_as_ready`).
    """
    server = RedisServerProcess()
    try:
        server.start()
        with redis.Redis(port=server.port) as client:
            client.config_set("requirepass", PASSWORD)
        yield server
    finally:
        server.cleanup()


def password_url(server: RedisServerProcess, password: str = PASSWORD) -> str:
    return f"redis://:{password}@127.0.0.1:{server.port}/0"


def lines_of(lines: list[dict[str, Any]], job_id: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("job_id") == job_id]


@pytest.mark.slow
def test_worker_logs_are_json_with_job_context_and_never_the_redis_password(
    start_worker, password_redis: RedisServerProcess, keys: QueueKeys
) -> None:
    url = password_url(password_redis)
    worker = start_worker(env={"COROQ_REDIS_URL": url})
    with Producer(url, queue=keys.queue) as producer:
        logged = producer.push("tests.logs", "hello-async")
        sync_logged = producer.push("tests.sync_logs", "hello-sync")
        failed = producer.push("tests.boom", "expected failure", _max_attempts=1)

        def finished() -> bool:
            found = [producer.status(job_id) for job_id in (logged, sync_logged, failed)]
            return all(record and record["status"] in {"succeeded", "dead"} for record in found)

        wait_for(finished)
        assert producer.status(logged)["status"] == "succeeded"
        assert producer.status(sync_logged)["status"] == "succeeded"
        assert producer.status(failed)["status"] == "dead"
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0

    text = worker.log_path.read_text()
    assert PASSWORD not in text
    lines = worker.logs()  # every line parses as JSON
    assert len(lines) == len([line for line in text.splitlines() if line.strip()])
    assert all(isinstance(line, dict) and "event" in line for line in lines)

    expected_events = {
        logged: ["job.started", "tests.structlog_line", "stdlib line hello-async", "job.succeeded"],
        sync_logged: [
            "job.started", "tests.sync_structlog_line", "sync stdlib line hello-sync",
            "job.succeeded",
        ],
        failed: ["job.started", "job.failed", "job.dead"],
    }  # fmt: skip
    for job_id, events in expected_events.items():
        inside = lines_of(lines, job_id)
        assert [line["event"] for line in inside] == events
        for line in inside:
            assert all(line.get(field) is not None for field in JOB_CONTEXT), line
            assert line["queue"] == keys.queue
            assert line["attempt"] == 1
    stdlib_lines = [line for line in lines if line.get("logger") == "tests.stdlib"]
    assert len(stdlib_lines) == 2
    assert all(line["job_id"] in (logged, sync_logged) for line in stdlib_lines)
    [succeeded] = [line for line in lines_of(lines, logged) if line["event"] == "job.succeeded"]
    assert succeeded["duration_ms"] >= 0

    lifecycle = [line["event"] for line in lines if line["event"].startswith("worker.")]
    for event in ("worker.started", "worker.draining", "worker.stopped"):
        assert lifecycle.count(event) == 1, lifecycle
    assert lifecycle.index("worker.started") < lifecycle.index("worker.draining")
    assert lifecycle.index("worker.draining") < lifecycle.index("worker.stopped")
    # Nothing of a job leaks into the lines the worker logs outside jobs.
    for line in lines:
        if line["event"].startswith("worker."):
            assert not {"job_id", "task", "attempt"} & set(line), line
    assert "***" in worker.events("worker.started")[0]["redis"]


def test_worker_check_never_prints_the_redis_password(
    password_redis: RedisServerProcess,
) -> None:
    env = {"COROQ_TASKS": "tests.tasks"}
    good = run_module(
        "worker", "check", env={**env, "COROQ_REDIS_URL": password_url(password_redis)}
    )
    assert good.returncode == 0, good.stdout + good.stderr
    assert PASSWORD not in good.stdout + good.stderr

    wrong = "wr0ng-pw"
    bad = run_module(
        "worker", "check", env={**env, "COROQ_REDIS_URL": password_url(password_redis, wrong)}
    )
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert wrong not in bad.stdout + bad.stderr

    gone = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    unreachable = run_module("worker", "check", env={**env, "COROQ_REDIS_URL": gone})
    assert unreachable.returncode == 1
    assert PASSWORD not in unreachable.stdout + unreachable.stderr


def test_local_redis_server_started_with_a_password_is_seen_as_ready() -> None:
    """`RedisServerProcess(extra_args=...)` passes options to redis-server; with
    `--requirepass` the server answers PING with NOAUTH, which is an answer."""
    server = RedisServerProcess(extra_args=("--requirepass", PASSWORD))
    try:
        server.start(timeout=5)
        with redis.Redis(port=server.port, password=PASSWORD) as client:
            assert client.ping()
    finally:
        server.cleanup()
