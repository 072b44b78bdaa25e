"""Turning queue bytes into a job or a rejection (DESIGN §3: bad input is never dropped and
never crashes the worker)."""

from __future__ import annotations

import os
import re
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from producer.keys import QueueKeys
from tests.unit.strategies import json_values, valid_envelopes
from worker.errors import InvalidArguments, MalformedJob, UnknownTask
from worker.jobs.decode import ReceivedJob, RejectedJob, decode_job
from worker.registry import TaskOptions, TaskRegistry, TaskSpec, task
from worker.settings import WorkerSettings, load_settings

KEYS = QueueKeys("q")


@task("limited.retries", timeout=7, max_attempts=9)
async def limited(x: int = 0) -> int:
    return x


def make_registry() -> TaskRegistry:
    registry = TaskRegistry.from_modules([])
    registry.add(TaskSpec.from_function(limited, TaskOptions("limited.retries", 7, 9)))
    return registry


def clean_settings(**overrides: Any) -> WorkerSettings:
    """Settings from defaults and `overrides` only, whatever COROQ_* the shell exports."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("COROQ_"):
                patch.delenv(name)
        return load_settings(**overrides)


REGISTRY = make_registry()
SETTINGS = clean_settings(default_timeout=120, default_max_attempts=4)


def decode(data: Any, settings: WorkerSettings = SETTINGS) -> ReceivedJob | RejectedJob:
    raw = data if isinstance(data, bytes) else orjson.dumps(data)
    return decode_job(raw, KEYS, REGISTRY, settings)


def rejected(data: Any, settings: WorkerSettings = SETTINGS) -> RejectedJob:
    result = decode(data, settings)
    assert isinstance(result, RejectedJob), result
    return result


def is_new_id(value: str) -> bool:
    return re.fullmatch(r"[0-9a-f]{32}", value) is not None


def test_an_oversized_payload_is_rejected_without_being_parsed() -> None:
    settings = clean_settings(max_payload_bytes=64)
    raw = orjson.dumps({"task": "echo", "id": "big", "args": ["x" * 100]})
    job = rejected(raw, settings)
    assert job.error.reason == "payload_too_large"
    assert isinstance(job.error, MalformedJob)
    assert "64" in str(job.error)
    assert job.raw == raw
    assert is_new_id(job.job_id)


def test_a_payload_of_exactly_the_limit_is_accepted() -> None:
    raw = orjson.dumps({"task": "echo", "id": "edge"})
    assert isinstance(decode(raw, clean_settings(max_payload_bytes=len(raw))), ReceivedJob)


@pytest.mark.parametrize("raw", [b"not json", b'{"task": "echo"', b"\xff\xfe\x00", b""])
def test_bytes_that_are_not_json_are_rejected_as_invalid_json(raw: bytes) -> None:
    job = rejected(raw)
    assert job.error.reason == "invalid_json"
    assert job.raw == raw
    assert job.task is None
    assert is_new_id(job.job_id)


def test_an_invalid_envelope_is_rejected_keeping_the_producers_id_and_task() -> None:
    job = rejected({"task": "echo", "id": "abc", "max_attempts": "3"})
    assert job.error.reason == "invalid_envelope"
    assert "max_attempts" in str(job.error)
    assert (job.job_id, job.task) == ("abc", "echo")


@pytest.mark.parametrize("data", [[1, 2], "echo", 3, None])
def test_json_that_is_not_an_object_is_an_invalid_envelope(data: Any) -> None:
    job = rejected(data)
    assert job.error.reason == "invalid_envelope"
    assert job.task is None
    assert is_new_id(job.job_id)


def test_an_unreadable_id_is_replaced_by_a_new_one() -> None:
    job = rejected({"task": 5, "id": ""})
    assert job.error.reason == "invalid_envelope"
    assert is_new_id(job.job_id)
    assert job.task is None


def test_an_unknown_task_is_rejected_keeping_the_producers_id() -> None:
    job = rejected({"task": "nope", "id": "j-7"})
    assert isinstance(job.error, UnknownTask)
    assert job.error.reason == "unknown_task"
    assert (job.job_id, job.task) == ("j-7", "nope")


def test_arguments_that_fail_validation_are_rejected_keeping_the_producers_id() -> None:
    job = rejected({"task": "sleep", "id": "j-8", "args": [-1]})
    assert isinstance(job.error, InvalidArguments)
    assert job.error.reason == "invalid_arguments"
    assert (job.job_id, job.task) == ("j-8", "sleep")


def test_a_valid_job_is_received_bound_to_its_task() -> None:
    raw = orjson.dumps({"task": "sleep", "id": "j-1", "args": {"seconds": "1.5"}})
    job = decode(raw)
    assert isinstance(job, ReceivedJob)
    assert (job.id, job.task, job.queue, job.raw) == ("j-1", "sleep", "q", raw)
    assert dict(job.arguments.arguments) == {"seconds": 1.5}
    assert job.stamped is None


@pytest.mark.parametrize(
    ("data", "timeout", "max_attempts"),
    [
        ({"task": "echo"}, 120, 4),  # settings
        ({"task": "limited.retries"}, 7, 9),  # task
        ({"task": "http.request", "args": ["https://example.com"]}, 60, 4),  # task, settings
        ({"task": "limited.retries", "timeout": 2.5, "max_attempts": 1}, 2.5, 1),  # envelope
        ({"task": "echo", "timeout": 1, "max_attempts": 11}, 1, 11),  # envelope
    ],
)
def test_timeout_and_max_attempts_come_from_the_envelope_then_the_task_then_settings(
    data: dict[str, Any], timeout: float, max_attempts: int
) -> None:
    job = decode({"id": "j", **data})
    assert isinstance(job, ReceivedJob)
    assert (job.timeout, job.max_attempts) == (timeout, max_attempts)


def test_a_job_without_an_id_is_adopted_with_a_new_one() -> None:
    raw = orjson.dumps({"task": "echo", "args": ["hi"]})
    job = decode(raw)
    assert isinstance(job, ReceivedJob)
    assert job.stamped is not None
    assert orjson.loads(job.stamped)["id"] == job.id
    assert is_new_id(job.id)
    assert job.envelope.id == job.id
    assert job.raw == raw


def test_each_adopted_job_gets_its_own_id() -> None:
    first, second = decode({"task": "echo"}), decode({"task": "echo"})
    assert isinstance(first, ReceivedJob)
    assert isinstance(second, ReceivedJob)
    assert first.id != second.id


@given(st.binary(max_size=200))
def test_any_bytes_decode_to_a_job_or_a_rejection(raw: bytes) -> None:
    assert isinstance(decode_job(raw, KEYS, REGISTRY, SETTINGS), ReceivedJob | RejectedJob)


@given(
    envelope=valid_envelopes(),
    task_name=st.sampled_from(["echo", "sleep", "http.request", "limited.retries", "nope"]),
    args=st.none() | st.lists(json_values, max_size=4) | st.dictionaries(st.text(), json_values),
)
def test_any_envelope_for_any_task_decodes_to_a_job_or_a_rejection_with_a_reason(
    envelope: dict[str, Any], task_name: str, args: Any
) -> None:
    envelope["task"] = task_name
    if args is not None:
        envelope["args"] = args
    result = decode(envelope)
    if isinstance(result, RejectedJob):
        assert result.error.reason in {"unknown_task", "invalid_arguments"}
        if isinstance(envelope.get("id"), str):
            assert result.job_id == envelope["id"]
    else:
        assert isinstance(result, ReceivedJob)
        assert (result.stamped is not None) == (envelope.get("id") is None)
