"""The `producer` command (DESIGN §3, §4): invalid input pushes nothing and exits 2; Redis
trouble exits 1 with a message, never a traceback."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import redis
from typer.testing import CliRunner

from producer.cli import app
from producer.keys import QueueKeys
from worker.local_redis import free_port

runner = CliRunner()


def write_jobs(tmp_path: Path, content: bytes, name: str = "jobs.json") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def push(redis_url: str, keys: QueueKeys, *args: str, stdin: bytes | None = None) -> object:
    return runner.invoke(
        app, ["push", *args, "--queue", keys.queue, "--redis-url", redis_url], input=stdin
    )


def test_a_valid_file_is_pushed_and_its_ids_printed(
    tmp_path: Path, redis_url: str, keys: QueueKeys, redis_client: redis.Redis
) -> None:
    path = write_jobs(tmp_path, orjson.dumps([{"task": "echo", "id": "a"}, {"task": "echo"}]))
    result = push(redis_url, keys, str(path))
    assert result.exit_code == 0, result.output
    ids = result.stdout.split()
    assert ids[0] == "a"
    assert len(ids) == 2
    assert "pushed 2 job(s)" in result.stderr
    assert [orjson.loads(raw)["id"] for raw in redis_client.lrange(keys.ready, 0, -1)] == ids[::-1]


def test_jobs_are_read_from_stdin(
    redis_url: str, keys: QueueKeys, redis_client: redis.Redis
) -> None:
    result = push(redis_url, keys, "-", stdin=b'{"task": "echo"}\n{"task": "echo"}\n')
    assert result.exit_code == 0, result.output
    assert redis_client.llen(keys.ready) == 2


def test_an_invalid_job_exits_2_naming_file_job_and_field_and_pushes_nothing(
    tmp_path: Path, redis_url: str, keys: QueueKeys, redis_client: redis.Redis
) -> None:
    jobs = [{"task": "echo"}, {"task": "echo"}, {"task": "echo", "max_attempts": "3"}]
    path = write_jobs(tmp_path, orjson.dumps(jobs))
    result = push(redis_url, keys, str(path))
    assert result.exit_code == 2
    assert str(path) in result.stderr
    assert "job 2" in result.stderr
    assert "max_attempts" in result.stderr
    assert "nothing was pushed" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert redis_client.llen(keys.ready) == 0


def test_a_bad_second_file_means_nothing_from_the_first_is_pushed(
    tmp_path: Path, redis_url: str, keys: QueueKeys, redis_client: redis.Redis
) -> None:
    good = write_jobs(tmp_path, b'{"task": "echo"}', "good.json")
    bad = write_jobs(tmp_path, b'{"task": "echo"}\n{"task": "echo"}\n{"task": \n', "bad.jsonl")
    result = push(redis_url, keys, str(good), str(bad))
    assert result.exit_code == 2
    assert str(bad) in result.stderr
    assert "line 3" in result.stderr
    assert redis_client.llen(keys.ready) == 0


def test_a_missing_file_exits_2(tmp_path: Path, redis_url: str, keys: QueueKeys) -> None:
    missing = tmp_path / "nope.json"
    result = push(redis_url, keys, str(missing))
    assert result.exit_code == 2
    assert str(missing) in result.stderr


def test_an_invalid_queue_name_exits_2(tmp_path: Path, redis_url: str) -> None:
    path = write_jobs(tmp_path, b'{"task": "echo"}')
    result = runner.invoke(app, ["push", str(path), "--queue", "a{b}", "--redis-url", redis_url])
    assert result.exit_code == 2
    assert "invalid queue name" in result.stderr


@pytest.mark.parametrize("command", ["push", "status"])
def test_unreachable_redis_exits_1_with_a_message_not_a_traceback(
    tmp_path: Path, command: str
) -> None:
    url = f"redis://:s3cretpw@127.0.0.1:{free_port()}/0"
    path = write_jobs(tmp_path, b'{"task": "echo"}')
    argument = str(path) if command == "push" else "some-id"
    result = runner.invoke(app, [command, argument, "--redis-url", url])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert result.stderr.startswith("producer: error: Redis at redis://:***@127.0.0.1:")
    assert "Traceback" not in result.output
    assert "s3cretpw" not in result.output


@pytest.mark.parametrize("url", ["http://localhost:6379/0", "redis://:s3cretpw@host:port/0"])
def test_a_malformed_redis_url_is_an_error_message_not_a_traceback(
    tmp_path: Path, url: str
) -> None:
    # redis-py raises ValueError for these URLs; `redis_errors` catches only RedisError,
    # so the command dies with an uncaught exception (a traceback for the user).
    path = write_jobs(tmp_path, b'{"task": "echo"}')
    result = runner.invoke(app, ["push", str(path), "--redis-url", url])
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in {1, 2}
    assert result.stderr.startswith("producer: error:")
    assert "s3cretpw" not in result.output


def test_status_of_an_unknown_id_exits_1(redis_url: str, keys: QueueKeys) -> None:
    result = runner.invoke(app, ["status", "nope", "--queue", keys.queue, "--redis-url", redis_url])
    assert result.exit_code == 1
    assert "no record for job nope" in result.stderr


def test_status_prints_the_record_as_json(
    redis_url: str, keys: QueueKeys, redis_client: redis.Redis
) -> None:
    redis_client.hset(
        keys.job("j-1"), mapping={"status": "succeeded", "attempts": "1", "result": "[1, 2]"}
    )
    result = runner.invoke(app, ["status", "j-1", "--queue", keys.queue, "--redis-url", redis_url])
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout) == {
        "id": "j-1",
        "status": "succeeded",
        "attempts": 1,
        "result": [1, 2],
    }


def test_no_arguments_prints_help() -> None:
    result = runner.invoke(app, [])
    assert "push" in result.output
    assert "status" in result.output
