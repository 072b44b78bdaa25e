"""Reading what the real worker left in Redis and in its log, for the integration tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from typing import Any

import orjson
import redis

from producer.keys import QueueKeys
from producer.records import decode_record
from tests.conftest import REPO_ROOT, WorkerProcess, wait_for

FINAL_STATUSES = {"succeeded", "dead"}


def record(client: redis.Redis, keys: QueueKeys, job_id: str) -> dict[str, Any]:
    """The job's record (`coroq:{Q}:job:<id>`), decoded; empty when there is none."""
    return decode_record(client.hgetall(keys.job(job_id)))


def wait_for_outcome(
    client: redis.Redis, keys: QueueKeys, job_id: str, timeout: float = 20.0
) -> dict[str, Any]:
    """Wait until the job's record reaches a final status; return the record."""

    def final() -> dict[str, Any] | None:
        found = record(client, keys, job_id)
        return found if found.get("status") in FINAL_STATUSES else None

    result: dict[str, Any] = wait_for(final, timeout)
    return result


def dead_entries(client: redis.Redis, keys: QueueKeys) -> list[dict[str, Any]]:
    return [orjson.loads(entry) for entry in client.lrange(keys.dead, 0, -1)]


def ready_ids(client: redis.Redis, keys: QueueKeys) -> list[str]:
    """The ids of the jobs in the ready list, in the order they will run."""
    return [orjson.loads(raw)["id"] for raw in reversed(client.lrange(keys.ready, 0, -1))]


def processing_keys(client: redis.Redis, keys: QueueKeys) -> list[bytes]:
    """Every worker's processing list of this queue (an empty list does not exist)."""
    return list(client.scan_iter(match=keys.processing_pattern, count=1000))


def processing_total(client: redis.Redis, keys: QueueKeys) -> int:
    return sum(client.llen(key) for key in processing_keys(client, keys))


def worker_id(worker: WorkerProcess) -> str:
    return str(worker.events("worker.started")[0]["worker_id"])


def job_events(worker: WorkerProcess, name: str) -> list[str]:
    """The job ids of the worker's log events called `name`, in log order."""
    return [line["job_id"] for line in worker.events(name)]


def max_overlap(lines: Iterable[dict[str, Any]], begin: str, end: str) -> int:
    """The most jobs between their `begin` and `end` events at once, in log order.

    Both events must come from one thread (the event loop), so the order of the lines in
    the log is the order in which they happened.
    """
    running: set[str] = set()
    most = 0
    for line in lines:
        if line.get("event") == begin:
            running.add(line["job_id"])
            most = max(most, len(running))
        elif line.get("event") == end:
            running.discard(line["job_id"])
    return most


def run_module(
    module: str, *args: str, env: dict[str, str], stdin: bytes | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`python -m <module> args…` from the repository root, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env},
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=timeout,
        check=False,
    )
