"""coroq's worker side: the daemon, the task registry and the built-in tasks.

The names below are imported on first use: importing one submodule alone (the pytest plugin,
`worker.pytest_plugin`, which every pytest run of a project with coroq installed loads) must
not load the whole worker and producer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.context import JobInfo, current_job
    from worker.errors import Fail, JobError, Retry
    from worker.registry import task
    from worker.retry import Backoff

__all__ = ["Backoff", "Fail", "JobError", "JobInfo", "Retry", "current_job", "task"]

_HOMES = {
    "Backoff": "worker.retry",
    "Fail": "worker.errors",
    "JobError": "worker.errors",
    "JobInfo": "worker.context",
    "Retry": "worker.errors",
    "current_job": "worker.context",
    "task": "worker.registry",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'worker' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
