"""Cancelling a job by id (docs/futures.md#cancel), shared by both producers.

Only the I/O differs between the two: each runs producer/lua/cancel.lua and, for a job that
has not started (it has no status yet), looks for its bytes in the ready list and the delayed
set, a chunk at a time, so that the script can remove them. The steps are here, as a
generator that yields what to send and receives the replies.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from producer.completions import WATCH_TTL
from producer.keys import QueueKeys
from producer.scripts import ScriptCall, cancel_call

# Entries read per LRANGE / ZRANGE while looking for a job that has not started.
SCAN_CHUNK = 1000
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


@dataclass(frozen=True, slots=True)
class ReadGroup:
    """Read the `group_id` of the job's record (`HGET`): a member of a group is counted in
    it when cancelled."""

    record: str


@dataclass(frozen=True, slots=True)
class ReadReady:
    """Read `LRANGE ready start stop`."""

    start: int
    stop: int


@dataclass(frozen=True, slots=True)
class ReadDelayed:
    """Read `ZRANGE delayed start stop`."""

    start: int
    stop: int


# What the steps ask the producer to do, and what they get back.
Step = ScriptCall | ReadGroup | ReadReady | ReadDelayed
Steps = Generator[Step, Any, Cancelled]


def entry_of(entries: Sequence[bytes], job_id: str) -> bytes | None:
    """The entry (job bytes) whose envelope has this id, if one has."""
    needle = job_id.encode()
    for raw in entries:
        if needle not in raw:  # most entries: no parsing
            continue
        try:
            envelope = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(envelope, dict) and envelope.get("id") == job_id:
            return raw
    return None


def cancel_steps(keys: QueueKeys, job_id: str) -> Steps:
    group = yield ReadGroup(keys.job(job_id))
    job_group = None if group is None else _text(group)
    raw: bytes | None = None
    for _ in range(ROUNDS):
        call = cancel_call(
            keys, job_id, raw=raw, ttl=WATCH_TTL, now=time.time(), job_group=job_group
        )
        outcome, status = yield call
        outcome, status = _text(outcome), _text(status) or None
        if outcome == "moved":  # taken between the scan and the call: it has a status now
            raw = None
            continue
        if outcome != "unknown":
            return Cancelled(job_id, CancelOutcome(outcome), status)
        if raw is None:
            raw = yield from _find_entry(job_id)
            if raw is not None:
                continue
        return Cancelled(job_id, CancelOutcome.UNKNOWN, None)
    return Cancelled(job_id, CancelOutcome.UNKNOWN, None)


def _find_entry(job_id: str) -> Generator[Step, Any, bytes | None]:
    for read in (ReadReady, ReadDelayed):
        start = 0
        while True:
            entries = yield read(start, start + SCAN_CHUNK - 1)
            found = entry_of(entries, job_id)
            if found is not None:
                return found
            if len(entries) < SCAN_CHUNK:
                break
            start += SCAN_CHUNK
    return None


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
