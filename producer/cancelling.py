"""Cancelling a job by id (docs/futures.md#cancel), shared by both producers.

Only the I/O differs between the two: each runs producer/lua/cancel.lua and, for a job that
has not started (it has no status yet), looks for its bytes in the ready list and the delayed
set, a chunk at a time, so that the script can remove them. The steps are here, as a
generator that yields what to send and receives the replies.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from producer.completions import WATCH_TTL
from producer.keys import QueueKeys
from producer.scripts import cancel_call
from producer.settling import settle_steps
from producer.steps import ReadFields, Step, scan_entries, text

# Rounds before giving up on a job that keeps moving between two reads (taken meanwhile).
ROUNDS = 4


class CancelOutcome(StrEnum):
    CANCELLED = "cancelled"  # it had not started; it never will (recorded `cancelled`)
    REQUESTED = "requested"  # it runs: its worker cancels it, then records `cancelled`
    FINAL = "final"  # it had ended already; nothing changed
    UNKNOWN = "unknown"  # no job with this id in the queue (never pushed, or expired)


@dataclass(frozen=True, slots=True)
class Cancelled:
    """What cancelling a job did, and the status it had before (`None`: not started)."""

    job_id: str
    outcome: CancelOutcome
    status: str | None

    def __str__(self) -> str:
        if self.outcome is CancelOutcome.FINAL:
            return f"{self.job_id}: already {self.status}, nothing changed"
        if self.outcome is CancelOutcome.REQUESTED:
            return f"{self.job_id}: running; its worker cancels it"
        if self.outcome is CancelOutcome.CANCELLED:
            return f"{self.job_id}: cancelled before it started"
        return f"{self.job_id}: no such job in this queue"


Steps = Generator[Step, Any, Cancelled]


def cancel_steps(keys: QueueKeys, job_id: str) -> Steps:
    (fields,) = yield ReadFields([keys.job(job_id)], ("group_id", "unique"))
    job_group = None if fields[0] is None else text(fields[0])
    unique_key = None if fields[1] is None else text(fields[1])
    raw: bytes | None = None
    for _ in range(ROUNDS):
        call = cancel_call(
            keys,
            job_id,
            raw=raw,
            ttl=WATCH_TTL,
            now=time.time(),
            job_group=job_group,
            unique_key=unique_key,
        )
        outcome, status, *has_dependents = yield call
        outcome, status = text(outcome), text(status) or None
        if has_dependents and has_dependents[0] == 1:  # jobs held for it: cancel them now
            yield from settle_steps(keys)
        if outcome == "moved":  # taken between the scan and the call: it has a status now
            raw = None
            continue
        if outcome != "unknown":
            return Cancelled(job_id, CancelOutcome(outcome), status)
        if raw is None:
            raw = (yield from scan_entries([job_id])).get(job_id)
            if raw is not None:
                continue
        return Cancelled(job_id, CancelOutcome.UNKNOWN, None)
    return Cancelled(job_id, CancelOutcome.UNKNOWN, None)
