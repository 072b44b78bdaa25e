"""Job outcomes the worker records, each with a stable machine-readable `reason`.

Every error that ends a job in the dead list is a `JobError` (or is wrapped in
`HandlerFailed`); its `reason` is what `coroq:{Q}:dead` entries and records carry.
"""

from __future__ import annotations

from producer.errors import CoroqError


class JobError(CoroqError):
    """A job could not run, or did not succeed."""

    reason = "failed"
    retryable = True


class MalformedJob(JobError):
    """The bytes taken from the queue are not a valid job envelope."""

    retryable = False

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class UnknownTask(JobError):
    reason = "unknown_task"
    retryable = False

    def __init__(self, task: str) -> None:
        self.task = task
        super().__init__(f"no task named {task!r} is registered on this worker")


class InvalidArguments(JobError):
    reason = "invalid_arguments"
    retryable = False


class JobTimeout(JobError):
    reason = "timeout"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"the job did not finish within its timeout of {seconds:g} s")


class HandlerFailed(JobError):
    """The task function raised; the original exception is the cause."""

    reason = "handler_error"


class ResultNotSerializable(JobError):
    reason = "result_not_serializable"
    retryable = False


class WorkerLost(JobError):
    """The job's worker was lost (killed, crashed, cut off) while the job ran alone on it, as
    many times as its attempts allow (docs/reliability.md#blame)."""

    reason = "worker_lost"
    retryable = False

    def __init__(self, attempts: int, forgiven: int, max_attempts: int) -> None:
        beside = f", {forgiven} of them lost beside other jobs and not held against it"
        super().__init__(
            f"its worker was lost (killed, crashed or cut off) while it ran alone, and all "
            f"{max_attempts} of its attempts are used ({attempts} started"
            f"{beside if forgiven else ''}); not starting it again"
        )


class Retry(Exception):
    """Raise from a task to ask for another attempt, after `after` seconds if given.

    The attempt still counts toward `max_attempts`.
    """

    def __init__(self, message: str = "retry requested", *, after: float | None = None) -> None:
        if after is not None and after < 0:
            raise ValueError("Retry(after=...) needs a delay of 0 or more seconds")
        self.after = after
        super().__init__(message)


class Fail(Exception):
    """Raise from a task to fail the job for good, without further attempts."""


class TaskRegistrationError(CoroqError):
    """A task module could not be loaded, or declares a task wrongly."""
