"""Logging (DESIGN §4): structlog, one JSON object per line, the job's context on every line,
standard-library loggers included."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
import structlog
from structlog.contextvars import bound_contextvars
from structlog.testing import LogCapture, capture_logs

from worker.logs import configure_logging, use_json
from worker.tasks.builtin import echo

JOB_CONTEXT = {"job_id": "j-1", "task": "echo", "queue": "q", "attempt": 2}


@contextmanager
def configured(level: str, fmt: Any) -> Iterator[None]:
    """`configure_logging`, undone afterwards so no other test sees it."""
    root = logging.getLogger()
    handlers, root_level = root.handlers[:], root.level
    try:
        configure_logging(level, fmt)
        yield
    finally:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
        root.handlers[:] = handlers
        root.setLevel(root_level)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def test_a_structlog_call_writes_one_json_line_with_level_time_and_context(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with configured("info", "json"):
        log = structlog.get_logger()
        with bound_contextvars(**JOB_CONTEXT):
            log.info("job.started", extra_field=[1, "x"])
        log.info("outside")
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 2
    first, second = json_lines(err)
    assert first["event"] == "job.started"
    assert first["level"] == "info"
    assert first["extra_field"] == [1, "x"]
    assert first["timestamp"].endswith("Z")
    assert {k: first[k] for k in JOB_CONTEXT} == JOB_CONTEXT
    assert second["event"] == "outside"
    assert not JOB_CONTEXT.keys() & second.keys()


def test_a_stdlib_logging_line_comes_out_as_json_with_the_bound_context(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with configured("info", "json"), bound_contextvars(**JOB_CONTEXT):
        logging.getLogger("coroq.tests.stdlib").warning("stdlib line %s", "here")
    (line,) = json_lines(capsys.readouterr().err)
    assert line["event"] == "stdlib line here"
    assert line["level"] == "warning"
    assert line["logger"] == "coroq.tests.stdlib"
    assert "timestamp" in line
    assert {k: line[k] for k in JOB_CONTEXT} == JOB_CONTEXT


def test_lines_below_the_level_are_dropped_from_both_apis(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with configured("warning", "json"):
        structlog.get_logger().info("quiet")
        logging.getLogger("coroq.tests.stdlib").info("quiet too")
        structlog.get_logger().error("loud")
    assert [line["event"] for line in json_lines(capsys.readouterr().err)] == ["loud"]


def test_an_exception_is_logged_as_structured_json(capsys: pytest.CaptureFixture[str]) -> None:
    with configured("info", "json"):
        try:
            raise ValueError("bad thing")
        except ValueError:
            structlog.get_logger().exception("job.failed")
    (line,) = json_lines(capsys.readouterr().err)
    assert line["event"] == "job.failed"
    assert line["level"] == "error"
    assert "bad thing" in orjson.dumps(line["exception"]).decode()


def test_values_json_cannot_hold_are_written_with_their_repr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    with configured("info", "json"):
        structlog.get_logger().info("odd", value=Opaque())
    (line,) = json_lines(capsys.readouterr().err)
    assert line["value"] == "<opaque>"


def test_console_format_is_not_json(capsys: pytest.CaptureFixture[str]) -> None:
    with configured("info", "console"):
        structlog.get_logger().info("for.people")
    err = capsys.readouterr().err
    assert "for.people" in err
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(err.splitlines()[0])


def test_auto_format_is_json_when_stderr_is_not_a_terminal() -> None:
    # Under pytest's capture stderr is not a terminal.
    assert use_json("auto")
    assert use_json("json")
    assert not use_json("console")


def test_the_echo_task_logs_its_arguments() -> None:
    with capture_logs() as logs:
        result = asyncio.run(echo("hi", 2))
    assert result == ["hi", 2]
    assert logs == [{"event": "echo", "log_level": "info", "args": ["hi", 2], "kwargs": {}}]


def test_a_captured_line_carries_the_bound_job_context() -> None:
    # LogCapture behind merge_contextvars, as the worker's own chain has it (built by hand:
    # capture_logs(processors=...) needs structlog 25.5, above the lower bound users get).
    capture = LogCapture()
    previous = structlog.get_config()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    try:
        with bound_contextvars(**JOB_CONTEXT):
            asyncio.run(echo(to="x"))
    finally:
        structlog.configure(**previous)
    (line,) = capture.entries
    assert line["kwargs"] == {"to": "x"}
    assert {k: line[k] for k in JOB_CONTEXT} == JOB_CONTEXT
