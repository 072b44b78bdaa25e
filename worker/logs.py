"""Logging setup: structlog, configured once from the entry point.

JSON lines (serialised by orjson) when stderr is not a terminal or `log_format = "json"`;
readable console output on a terminal. Standard-library loggers (redis-py, aiohttp, a task's
own `logging` calls) go through the same processors, so every line has the same shape and
every line logged inside a job carries `job_id`, `task`, `queue` and `attempt`.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Literal

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from worker.context import current_job_or_none

LogFormat = Literal["json", "console", "auto"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_LEVELS["error"] = logging.ERROR


def _orjson_dumps(event: EventDict, **_: Any) -> str:
    return orjson.dumps(event, default=repr).decode()


def _leading_fields_first(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """Put timestamp, level and event first, so a JSON line reads well to people too."""
    head = {name: event.pop(name) for name in ("timestamp", "level", "event") if name in event}
    return {**head, **event}


def _drop_color_message(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    event.pop("color_message", None)
    return event


class _Timestamps:
    """ISO 8601 UTC timestamps with microseconds, the date and time part made once a second
    (structlog's TimeStamper builds a datetime per line: a quarter of a line's cost)."""

    def __init__(self) -> None:
        self._cached = (-1, "")  # (second, its text), replaced whole: threads share it

    def __call__(self, _: WrappedLogger, __: str, event: EventDict) -> EventDict:
        now = time.time()
        second = int(now)
        cached_second, prefix = self._cached
        if second != cached_second:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._cached = (second, prefix)
        event["timestamp"] = f"{prefix}.{int((now - second) * 1_000_000):06d}Z"
        return event


_add_timestamp = _Timestamps()


def _add_job_context(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """Inside a job, every line carries its job_id, task, queue and attempt, and in a traced
    job its trace_id and span_id, which join the line to the trace."""
    job = current_job_or_none()
    if job is not None:
        event.setdefault("job_id", job.id)
        event.setdefault("task", job.task)
        event.setdefault("queue", job.queue)
        event.setdefault("attempt", job.attempt)
        if job.trace_id is not None:
            event.setdefault("trace_id", job.trace_id)
            event.setdefault("span_id", job.span_id)
    return event


def use_json(fmt: LogFormat) -> bool:
    if fmt == "auto":
        return not sys.stderr.isatty()
    return fmt == "json"


def configure_logging(level: str = "info", fmt: LogFormat = "auto") -> None:
    """Configure structlog and the standard library's logging; call once per process."""
    numeric_level = _LEVELS[level]
    shared: list[Processor] = [
        _add_job_context,
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _add_timestamp,
    ]
    renderer: Processor
    if use_json(fmt):
        shared += [structlog.processors.dict_tracebacks, _leading_fields_first]
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    else:
        renderer = structlog.dev.ConsoleRenderer()

    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.WriteLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                *shared,
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ExtraAdder(),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _drop_color_message,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric_level)
