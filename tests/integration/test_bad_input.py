"""Bad input never crashes the worker and is never dropped: it is dead-lettered, bytes kept."""

from __future__ import annotations

import base64

import pytest
import redis

from producer import Producer
from producer.keys import QueueKeys
from tests.conftest import wait_for
from tests.integration.helpers import (
    dead_entries,
    processing_total,
    record,
    wait_for_outcome,
    worker_id,
)

MAX_PAYLOAD = 20_000  # above the 10 kB of the deeply nested job

JSON, ENVELOPE, UNKNOWN = "invalid_json", "invalid_envelope", "unknown_task"
ARGUMENTS, TOO_LARGE = "invalid_arguments", "payload_too_large"

# (what it is, the exact bytes pushed, the reason the dead list must give)
BAD_PAYLOADS: list[tuple[str, bytes, str]] = [
    ("not JSON", b"this is not json {", JSON),
    ("invalid UTF-8", b"\xff\xfe", JSON),
    ("invalid UTF-8 inside JSON", b'{"task":"echo","args":["\xff"]}', JSON),
    ("empty", b"", JSON),
    ("a JSON array", b"[1,2]", ENVELOPE),
    ("a JSON string", b'"str"', ENVELOPE),
    ("a JSON number", b"42", ENVELOPE),
    ("JSON null", b"null", ENVELOPE),
    ("no task", b'{"args":[1,2]}', ENVELOPE),
    ("task not a string", b'{"task":5}', ENVELOPE),
    ("unknown task", b'{"task":"no.such.task","args":[]}', UNKNOWN),
    ("task named like a module", b'{"task":"os.system","args":["true"]}', UNKNOWN),
    ("argument fails validation", b'{"task":"tests.add","args":["x",1]}', ARGUMENTS),
    ("too few arguments", b'{"task":"tests.add","args":[1]}', ARGUMENTS),
    ("too many arguments", b'{"task":"tests.add","args":[1,2,3]}', ARGUMENTS),
    ("unknown keyword", b'{"task":"tests.add","args":{"a":1,"b":2,"c":3}}', ARGUMENTS),
    ("over max_payload_bytes", b'{"task":"echo","args":["' + b"x" * 40_000 + b'"]}', TOO_LARGE),
    ("max_attempts a string", b'{"task":"tests.add","args":[1,2],"max_attempts":"3"}', ENVELOPE),
    ("max_attempts zero", b'{"task":"tests.add","args":[1,2],"max_attempts":0}', ENVELOPE),
    ("negative timeout", b'{"task":"tests.add","args":[1,2],"timeout":-1}', ENVELOPE),
    ("args a string", b'{"task":"tests.add","args":"str"}', ENVELOPE),
    ("id a number", b'{"task":"tests.add","args":[1,2],"id":7}', ENVELOPE),
    ("5000 levels deep", b'{"task":"echo","args":' + b"[" * 5000 + b"]" * 5000 + b"}", JSON),
    ("a number beyond a double", b'{"task":"tests.add","args":[1e999,1]}', JSON),
    ("a 400-digit integer", b'{"task":"echo","args":[1' + b"0" * 400 + b"]}", JSON),
]


def original_bytes(entry: dict) -> bytes:
    if "raw_base64" in entry:
        return base64.b64decode(entry["raw_base64"])
    return str(entry["raw"]).encode()


@pytest.mark.slow
def test_bad_payloads_are_dead_lettered_with_their_reason_and_bytes(
    start_worker, producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    assert len({raw for _, raw, _ in BAD_PAYLOADS}) == len(BAD_PAYLOADS)
    worker = start_worker(env={"COROQ_MAX_PAYLOAD_BYTES": str(MAX_PAYLOAD)})
    for _, raw, _ in BAD_PAYLOADS:
        redis_client.lpush(keys.ready, raw)
    good = producer.push("tests.add", 40, 2)

    assert wait_for_outcome(redis_client, keys, good)["result"] == 42
    wait_for(lambda: redis_client.llen(keys.dead) >= len(BAD_PAYLOADS))

    entries = {original_bytes(entry): entry for entry in dead_entries(redis_client, keys)}
    assert len(entries) == len(BAD_PAYLOADS)
    for what, raw, reason in BAD_PAYLOADS:
        entry = entries.get(raw)
        assert entry is not None, f"{what}: not in the dead list"
        assert entry["reason"] == reason, f"{what}: {entry['error']}"
        assert entry["error"], what
        assert ("raw_base64" in entry) == (what.startswith("invalid UTF-8")), what
        found = record(redis_client, keys, entry["id"])
        assert (found["status"], found["reason"]) == ("dead", reason), what

    # Each record is written before its line is logged.
    dead_lines = wait_for(
        lambda: len(worker.events("job.dead")) >= len(BAD_PAYLOADS) and worker.events("job.dead")
    )
    assert sorted(line["job_id"] for line in dead_lines) == sorted(
        entry["id"] for entry in entries.values()
    )
    by_id = {entry["id"]: entry for entry in entries.values()}
    for line in dead_lines:
        assert line["reason"] == by_id[line["job_id"]]["reason"]
        assert line["error"]
    assert worker.process.poll() is None
    assert processing_total(redis_client, keys) == 0
    assert redis_client.llen(keys.ready) == 0


def test_rejected_job_keeps_the_id_and_task_its_producer_gave(
    start_worker, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    start_worker()
    redis_client.lpush(keys.ready, b'{"id":"mine-1","task":"tests.add","args":["x","y"]}')
    found = wait_for_outcome(redis_client, keys, "mine-1")
    assert found["status"] == "dead"
    assert found["reason"] == "invalid_arguments"
    [entry] = dead_entries(redis_client, keys)
    assert (entry["id"], entry["task"]) == ("mine-1", "tests.add")
    assert "'a'" in entry["error"]


def test_deeply_nested_job_without_an_id_is_dead_lettered_not_stranded_in_processing(
    start_worker, producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    """300 levels parse (orjson reads up to 1024) but cannot be written back by the worker.

    A producer that leaves out the id (redis-cli, another language) makes the worker stamp
    one and rewrite the job; whatever happens then, the job must end somewhere visible.
    """
    worker = start_worker()
    raw = b'{"task":"echo","args":[' + b"[" * 300 + b"]" * 300 + b"]}"
    redis_client.lpush(keys.ready, raw)
    good = producer.push("tests.add", 1, 2)
    assert wait_for_outcome(redis_client, keys, good)["status"] == "succeeded"

    def out_of_processing() -> bool:
        return processing_total(redis_client, keys) == 0

    try:
        wait_for(out_of_processing, timeout=10)
    except AssertionError:
        errors = [line.get("exception") for line in worker.events("consumer.dispatch_error")]
        stranded = redis_client.lrange(keys.processing(worker_id(worker)), 0, -1)
        pytest.fail(
            f"{len(stranded)} job(s) left in the processing list, none dead-lettered; "
            f"the worker logged consumer.dispatch_error: {str(errors)[:400]}"
        )
    assert [original_bytes(entry) for entry in dead_entries(redis_client, keys)] == [raw]
    assert len(wait_for(lambda: worker.events("job.dead"))) == 1
    assert worker.process.poll() is None
