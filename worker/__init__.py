"""coroq's worker side: the daemon, the task registry and the built-in tasks."""

from worker.errors import JobError
from worker.registry import task

__all__ = ["JobError", "task"]
