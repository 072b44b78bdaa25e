"""The status values of a job record (`coroq:{Q}:job:<id>`, field `status`).

Every piece of code reads them from here: the Lua scripts get them as a table `STATUS`
written at the top of each script from this enum (`producer.scripts`), so a script says
`STATUS.running`, never the literal. docs/protocol.md#statuses describes each one.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"  # waiting in the ready list (again, after a shutdown or a revive)
    RUNNING = "running"  # an attempt started on a worker
    RETRYING = "retrying"  # failed; waits in the delayed set for its next attempt
    SUCCEEDED = "succeeded"  # final: `result` holds what the task returned
    DEAD = "dead"  # final: in the dead list, with `reason`, `error` and `traceback`
    CANCELLED = "cancelled"  # final: reserved for cancelled jobs


FINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.DEAD, JobStatus.CANCELLED})


def lua_status_table() -> str:
    """The Lua prelude that gives every script the status values."""
    fields = ", ".join(f"{status.name.lower()} = '{status.value}'" for status in JobStatus)
    return f"local STATUS = {{{fields}}}\n"
