"""coroq's worker side: the daemon, the task registry and the built-in tasks."""

from worker.context import JobInfo, current_job
from worker.errors import Fail, JobError, Retry
from worker.registry import task
from worker.retry import Backoff

__all__ = ["Backoff", "Fail", "JobError", "JobInfo", "Retry", "current_job", "task"]
