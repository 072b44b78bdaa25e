"""The one error tree of coroq.

`CoroqError` is the root. Beneath it: input errors the producer reports (`InvalidJob`),
outcomes the worker records for a job (`JobError` and its children, each with a stable
machine-readable `reason`), and infrastructure (`RedisUnavailable`). The worker's own
errors live in `worker.errors` and derive from these.
"""

from __future__ import annotations

from typing import Any


class CoroqError(Exception):
    """Root of every error coroq raises on purpose."""


class InvalidQueueName(CoroqError, ValueError):
    """A queue name that cannot be used inside a Redis key."""


class InvalidJob(CoroqError, ValueError):
    """A job that does not match the envelope (docs/protocol.md#envelope).

    `source` names where it came from (a file name, `<stdin>`, `<api>`), `index` is the job's
    position in that source (0-based), `field` the offending field when one is to blame.
    """

    def __init__(
        self,
        problem: str,
        *,
        source: str = "<api>",
        index: int | None = None,
        field: str | None = None,
        line: int | None = None,
    ) -> None:
        self.problem = problem
        self.source = source
        self.index = index
        self.field = field
        self.line = line
        super().__init__(self.describe())

    def describe(self) -> str:
        where = self.source
        if self.index is not None:
            where += f": job {self.index}"
        if self.line is not None:
            where += f" (line {self.line})"
        if self.field is not None:
            where += f": field '{self.field}'"
        return f"{where}: {self.problem}"


class RedisUnavailable(CoroqError):
    """Redis could not be reached after the configured retries."""


class RedisRefused(RedisUnavailable):
    """Redis refused a command to this user (an ACL without a permission coroq needs):
    no waiting cures it. The worker stops (exit 2); what it holds stays in Redis."""


class PartialPush(CoroqError):
    """Redis failed part-way through a push: some jobs are in the queue, some are not.

    `pushed` went in for sure; `uncertain` were in the round trip that failed (each round is
    one MULTI/EXEC, so they are either all in or all out); the rest were not pushed.
    """

    def __init__(self, pushed: list[str], uncertain: list[str], remaining: int, cause: str):
        self.pushed = pushed
        self.uncertain = uncertain
        self.remaining = remaining
        super().__init__(
            f"Redis failed after {len(pushed)} job(s) were pushed: {cause}; "
            f"{len(uncertain)} job(s) of the last round trip may or may not be in the queue, "
            f"{remaining} more were not pushed"
        )


class NotReplicated(CoroqError):
    """A durable push (`_durable=True`, `producer push --durable`) that no replica confirmed
    in time: the jobs are in the primary's queue, but a failover now could lose them.

    `confirmed` are on a replica too; `unconfirmed` reached the primary only; the rest were not
    pushed (the push stops at the first batch no replica confirms).
    """

    def __init__(
        self, confirmed: list[str], unconfirmed: list[str], remaining: int, timeout: float
    ):
        self.confirmed = confirmed
        self.unconfirmed = unconfirmed
        self.remaining = remaining
        shown = ", ".join(unconfirmed[:10]) + (", ..." if len(unconfirmed) > 10 else "")
        super().__init__(
            f"no replica confirmed job(s) {shown} within {timeout:g} s: they are in the "
            f"primary's queue but a failover now could lose them (is a replica connected? "
            f"INFO replication); {len(confirmed)} job(s) before them were confirmed, "
            f"{remaining} more were not pushed"
        )


class DurableUnsupported(CoroqError, ValueError):
    """A durable push where Redis cannot confirm it (a Cluster): nothing was pushed."""


class InvalidSchedule(CoroqError, ValueError):
    """A delay or start time that cannot be used: negative, without a UTC offset, both at once,
    or combined with a push to the front."""


class WaitTimeout(CoroqError, TimeoutError):
    """Waiting for job outcomes ran out of time.

    `records` holds the final record of each job that finished, `pending` the ids of the others.
    """

    def __init__(self, records: dict[str, dict[str, Any]], pending: list[str], timeout: float):
        self.records = records
        self.pending = pending
        self.timeout = timeout
        total = len(records) + len(pending)
        super().__init__(
            f"{len(pending)} of {total} job(s) still pending after {timeout:g} s "
            "(not finished: queued, delayed, running or retrying)"
        )


class ProducerClosed(CoroqError):
    """The producer was closed while something still waited on a job through it. The job
    itself goes on: wait on it again from another producer (`producer.job(id)`)."""


class JobFailed(CoroqError):
    """A job ended dead: every attempt failed, or it could not be run at all.

    `record` is its final record; `reason` (machine-readable, docs/protocol.md#reasons) and
    `error` come from it.
    """

    def __init__(self, job_id: str, record: dict[str, Any]) -> None:
        self.job_id = job_id
        self.record = record
        self.reason: str = str(record.get("reason", ""))
        self.error: str = str(record.get("error", ""))
        task = record.get("task", "?")
        super().__init__(f"job {job_id} ({task}) is dead: {self.reason}: {self.error}")
