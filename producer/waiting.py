"""Waiting for jobs to reach a final status, shared by `Producer.wait` and its async twin.

The waiter polls the records (`coroq:{Q}:job:<id>`) of the jobs still pending, in pipelined
chunks: `HGET status` for each, then `HGETALL` for those found final. The pause between
polls grows from 20 ms to 1 s, so short jobs are seen quickly and long waits cost little.
Only the I/O differs between the two producers; this class holds the state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any

from producer.errors import WaitTimeout
from producer.records import decode_record
from producer.schedule import delay_seconds
from producer.statuses import FINAL_STATUSES

FIRST_PAUSE = 0.02
LONGEST_PAUSE = 1.0
# Records read per pipeline round trip.
CHUNK = 1000


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) else None


class Waiter:
    """The jobs still pending, the final records found so far, and when to look again."""

    def __init__(
        self,
        ids: Iterable[str],
        timeout: float | timedelta | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pending: list[str] = list(dict.fromkeys(ids))  # duplicates waited for once
        self.records: dict[str, dict[str, Any]] = {}
        self._clock = clock
        self.timeout = None if timeout is None else delay_seconds(timeout, name="timeout")
        self._deadline = None if self.timeout is None else self._clock() + self.timeout
        self._pause = FIRST_PAUSE

    @property
    def done(self) -> bool:
        return not self.pending

    def chunks(self) -> Iterator[list[str]]:
        """The pending ids, CHUNK at a time (a snapshot: safe to update while iterating)."""
        snapshot = list(self.pending)
        for start in range(0, len(snapshot), CHUNK):
            yield snapshot[start : start + CHUNK]

    @staticmethod
    def final_ids(chunk: Sequence[str], statuses: Sequence[object]) -> list[str]:
        """The ids of `chunk` whose status (as `HGET` returned it) is final."""
        return [
            job_id
            for job_id, status in zip(chunk, statuses, strict=True)
            if _text(status) in FINAL_STATUSES
        ]

    def finish(self, ids: Sequence[str], raw_records: Sequence[Mapping[Any, Any]]) -> None:
        """Keep the records that are (still) final; the others stay pending (a job revived by
        `producer dead retry` between the two reads, say)."""
        finished = set()
        for job_id, raw in zip(ids, raw_records, strict=True):
            record = decode_record(raw) if raw else {}
            if record.get("status") in FINAL_STATUSES:
                self.records[job_id] = record
                finished.add(job_id)
        if finished:
            self.pending = [job_id for job_id in self.pending if job_id not in finished]

    def next_pause(self) -> float:
        """Seconds to sleep before the next poll; raises `WaitTimeout` when time is up."""
        pause = self._pause
        self._pause = min(LONGEST_PAUSE, self._pause * 2)
        if self._deadline is None or self.timeout is None:
            return pause
        remaining = self._deadline - self._clock()
        if remaining <= 0:
            raise WaitTimeout(self.records, list(self.pending), self.timeout)
        # The last poll happens at the deadline, so a job finishing just in time is seen.
        return min(pause, remaining)
