"""`producer push` in a subprocess: files, stdin, `--front`, and all-or-nothing validation."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest
import redis

from producer.keys import QueueKeys
from tests.integration.helpers import ready_ids, run_module


@pytest.fixture
def push(redis_url: str, keys: QueueKeys):
    def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        return run_module(
            "producer", "push", *args, "--queue", keys.queue,
            env={"COROQ_REDIS_URL": redis_url}, stdin=stdin,
        )  # fmt: skip

    return run


def printed_ids(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    ids = result.stdout.splitlines()
    assert all(job_id and job_id == job_id.strip() for job_id in ids), result.stdout
    return ids


def write_json(path: Path, value: object) -> str:
    path.write_bytes(orjson.dumps(value))
    return str(path)


def test_push_reads_an_object_an_array_json_lines_and_stdin_in_order(
    push, redis_client: redis.Redis, keys: QueueKeys, tmp_path: Path
) -> None:
    one = write_json(tmp_path / "one.json", {"task": "tests.add", "args": [1, 2], "id": "o-1"})
    array = write_json(
        tmp_path / "array.json",
        [{"task": "echo", "args": ["a"]}, {"task": "echo", "args": {"k": "b"}}],
    )
    lines = tmp_path / "jobs.jsonl"
    lines.write_text(
        '{"task": "echo", "args": ["l1"]}\n\n{"task": "sleep", "args": [0], "max_attempts": 2}\n'
    )
    from_files = printed_ids(push(one, array, str(lines)))
    from_stdin = printed_ids(push("-", stdin=b'{"task": "echo", "args": ["stdin"]}'))

    assert len(from_files) == 5
    assert from_files[0] == "o-1"
    assert len(from_stdin) == 1
    assert len(set(from_files + from_stdin)) == 6
    # Workers take from the right: the run order is the order of the files, then stdin.
    assert ready_ids(redis_client, keys) == from_files + from_stdin
    payloads = [orjson.loads(raw) for raw in reversed(redis_client.lrange(keys.ready, 0, -1))]
    assert [payload["args"] for payload in payloads] == [
        [1, 2], ["a"], {"k": "b"}, ["l1"], [0], ["stdin"],
    ]  # fmt: skip
    assert payloads[4]["max_attempts"] == 2
    assert all(isinstance(payload["enqueued_at"], float) for payload in payloads)


def test_push_front_puts_jobs_at_the_consuming_end_in_file_order(
    push, redis_client: redis.Redis, keys: QueueKeys, tmp_path: Path
) -> None:
    waiting = printed_ids(push(write_json(tmp_path / "w.json", [{"task": "echo"}] * 3)))
    urgent = printed_ids(
        push(
            "--front",
            write_json(tmp_path / "u.json", [{"task": "echo"}, {"task": "sleep", "args": [0]}]),
        )
    )
    assert orjson.loads(redis_client.lindex(keys.ready, -1))["id"] == urgent[0]
    assert ready_ids(redis_client, keys) == urgent + waiting


def test_push_of_a_file_with_an_invalid_job_pushes_nothing_and_names_the_job(
    push, redis_client: redis.Redis, keys: QueueKeys, tmp_path: Path
) -> None:
    good = write_json(tmp_path / "good.json", {"task": "echo", "args": ["fine"]})
    bad = write_json(
        tmp_path / "bad.json",
        [
            {"task": "echo", "args": ["fine"]},
            {"task": "tests.add", "args": [1, 2]},
            {"task": "tests.add", "args": [1, 2], "max_attempts": 0},
        ],
    )
    result = push(good, bad)
    assert result.returncode != 0
    assert result.stdout == ""
    assert bad in result.stderr
    assert "job 2" in result.stderr
    assert "max_attempts" in result.stderr
    assert "Traceback" not in result.stderr
    assert redis_client.llen(keys.ready) == 0


def test_push_of_broken_json_lines_names_the_line_and_pushes_nothing(
    push, redis_client: redis.Redis, keys: QueueKeys, tmp_path: Path
) -> None:
    lines = tmp_path / "broken.jsonl"
    lines.write_text('{"task": "echo"}\n{"task": "echo"\n')
    result = push(str(lines))
    assert result.returncode != 0
    assert str(lines) in result.stderr
    assert "line 2" in result.stderr
    assert redis_client.llen(keys.ready) == 0
