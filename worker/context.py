"""What a running task can know about its own job: `worker.current_job()`.

Handlers use it for idempotency keys (the job id is stable across attempts) or to behave
differently on a later attempt. Set by the runner for the duration of each attempt; `def`
tasks see it too (their thread runs in a copy of the job's context).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol


class _Reporter(Protocol):
    def report(self, fraction: float, note: str = "") -> None: ...


@dataclass(frozen=True, slots=True)
class JobInfo:
    id: str
    task: str
    queue: str
    attempt: int
    max_attempts: int
    reporter: _Reporter | None = field(default=None, repr=False, compare=False)
    # The attempt's span, when the worker traces jobs (docs/tracing.md): 32 and 16 hex digits.
    trace_id: str | None = None
    span_id: str | None = None

    def progress(self, fraction: float, note: str = "") -> None:
        """Report how far the job has got, from 0 to 1, with an optional short note
        (docs/futures.md#progress). Cheap: call it as often as you like."""
        if self.reporter is None:
            raise RuntimeError("progress is reported only by a task a worker runs")
        self.reporter.report(fraction, note)


_current: ContextVar[JobInfo | None] = ContextVar("coroq_current_job", default=None)


def current_job() -> JobInfo:
    """The job this task runs for; raises LookupError outside a job."""
    info = _current.get()
    if info is None:
        raise LookupError("current_job() is only available inside a running task")
    return info


def current_job_or_none() -> JobInfo | None:
    return _current.get()


def set_current_job(info: JobInfo) -> None:
    _current.set(info)
