"""Job files (DESIGN §2, §3): one object, an array or JSON Lines; one bad job, nothing pushed."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from producer.errors import InvalidJob
from producer.jobfile import STDIN_NAME, parse_jobs, read_job_source


def tasks_of(data: bytes) -> list[str]:
    return [job.task for job in parse_jobs(data, source="jobs.json")]


def test_a_single_object_is_one_job() -> None:
    assert tasks_of(b'{"task": "echo", "args": ["hi"]}') == ["echo"]


def test_an_array_is_its_jobs_in_order() -> None:
    data = orjson.dumps([{"task": "a"}, {"task": "b"}, {"task": "c"}])
    assert tasks_of(data) == ["a", "b", "c"]


def test_json_lines_are_read_in_order_skipping_blank_lines() -> None:
    data = b'{"task": "a"}\n\n{"task": "b"}\r\n   \n{"task": "c", "args": {"x": 1}}\n\n'
    assert tasks_of(data) == ["a", "b", "c"]


def test_a_single_json_line_is_one_job() -> None:
    assert tasks_of(b'{"task": "a"}\n') == ["a"]


@pytest.mark.parametrize("data", [b"", b"  \n\t\n"])
def test_empty_input_is_an_error(data: bytes) -> None:
    with pytest.raises(InvalidJob, match="no jobs found") as caught:
        parse_jobs(data, source="empty.json")
    assert caught.value.source == "empty.json"


def test_an_invalid_job_in_an_array_is_named_by_index_and_field() -> None:
    data = orjson.dumps(
        [{"task": "a"}, {"task": "b"}, {"task": "c", "max_attempts": 0}, {"task": "d"}]
    )
    with pytest.raises(InvalidJob) as caught:
        parse_jobs(data, source="jobs.json")
    error = caught.value
    assert (error.source, error.index, error.field, error.line) == (
        "jobs.json",
        2,
        "max_attempts",
        None,
    )
    assert str(error).startswith("jobs.json: job 2: field 'max_attempts': ")


def test_a_broken_json_line_is_named_by_index_and_line() -> None:
    data = b'{"task": "a"}\n\n{"task": "b"\n{"task": "c"}\n'
    with pytest.raises(InvalidJob, match="not valid JSON") as caught:
        parse_jobs(data, source="jobs.jsonl")
    error = caught.value
    assert (error.index, error.line, error.field) == (1, 3, None)
    assert str(error).startswith("jobs.jsonl: job 1 (line 3): not valid JSON")


def test_an_invalid_job_on_a_json_line_is_named_by_index_line_and_field() -> None:
    data = b'{"task": "a"}\n{"task": "b"}\n{"task": "c", "timeout": "5"}\n'
    with pytest.raises(InvalidJob) as caught:
        parse_jobs(data, source="jobs.jsonl")
    assert (caught.value.index, caught.value.line, caught.value.field) == (2, 3, "timeout")


@pytest.mark.parametrize("element", [b'"echo"', b"3", b"null", b"[]"])
def test_an_array_element_that_is_not_an_object_is_named_by_index(element: bytes) -> None:
    data = b'[{"task": "a"}, ' + element + b"]"
    with pytest.raises(InvalidJob, match="must be a JSON object") as caught:
        parse_jobs(data, source="jobs.json")
    assert (caught.value.index, caught.value.field) == (1, None)


def test_a_json_line_that_is_not_an_object_is_named_by_index_and_line() -> None:
    with pytest.raises(InvalidJob, match="must be a JSON object") as caught:
        parse_jobs(b'{"task": "a"}\n[1, 2]\n', source="jobs.jsonl")
    assert (caught.value.index, caught.value.line) == (1, 2)


def test_a_top_level_scalar_is_not_a_job() -> None:
    with pytest.raises(InvalidJob, match="must be a JSON object"):
        parse_jobs(b'"echo"', source="jobs.json")


def test_a_file_is_read_by_path(tmp_path: Path) -> None:
    path = tmp_path / "jobs.json"
    path.write_bytes(b'[{"task": "a"}, {"task": "b"}]')
    assert [job.task for job in read_job_source(str(path), io.BytesIO())] == ["a", "b"]


def test_a_dash_reads_stdin_and_names_it_in_errors() -> None:
    assert [job.task for job in read_job_source("-", io.BytesIO(b'{"task": "a"}'))] == ["a"]
    with pytest.raises(InvalidJob) as caught:
        read_job_source("-", io.BytesIO(b'{"task": ""}'))
    assert caught.value.source == STDIN_NAME


def test_a_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(InvalidJob, match="cannot read the file") as caught:
        read_job_source(str(missing), io.BytesIO())
    assert caught.value.source == str(missing)
