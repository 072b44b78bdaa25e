"""Job outcomes the worker records, each with a stable machine-readable `reason`.

Every error that ends a job in the dead list is a `JobError` (or is wrapped in
`HandlerFailed`); its `reason` is what `coroq:{Q}:dead` entries and records carry.
"""

from __future__ import annotations

from producer.errors import CoroqError


class JobError(CoroqError):
    """A job could not run, or did not succeed."""

    reason = "failed"


class MalformedJob(JobError):
    """The bytes taken from the queue are not a valid job envelope."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class UnknownTask(JobError):
    reason = "unknown_task"

    def __init__(self, task: str) -> None:
        self.task = task
        super().__init__(f"no task named {task!r} is registered on this worker")


class InvalidArguments(JobError):
    reason = "invalid_arguments"


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


class TaskRegistrationError(CoroqError):
    """A task module could not be loaded, or declares a task wrongly."""
