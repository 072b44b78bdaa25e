"""The documented path end to end: `producer push` a file, the real worker runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import redis

from producer.keys import QueueKeys
from tests.conftest import wait_for


def test_pushed_file_runs_on_the_worker_and_the_record_says_so(
    start_worker, redis_url: str, keys: QueueKeys, redis_client: redis.Redis, tmp_path: Path
) -> None:
    jobs = tmp_path / "jobs.json"
    jobs.write_bytes(orjson.dumps([{"task": "tests.add", "args": [2, 3]}]))
    env = {**os.environ, "COROQ_REDIS_URL": redis_url}
    pushed = subprocess.run(
        [sys.executable, "-m", "producer", "push", str(jobs), "--queue", keys.queue],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    job_id = pushed.stdout.strip()
    worker = start_worker()
    wait_for(lambda: redis_client.hget(keys.job(job_id), "status") == b"succeeded")
    status = subprocess.run(
        [sys.executable, "-m", "producer", "status", job_id, "--queue", keys.queue],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    record = orjson.loads(status.stdout)
    assert record["result"] == 5
    assert record["attempts"] == 1
    worker.signal()
    assert worker.wait() == 0
