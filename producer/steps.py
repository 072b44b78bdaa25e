"""Work that needs a few Redis round trips, written once for both producers.

Cancelling a job and holding one for others (`producer.cancelling`, `producer.dependencies`)
read, decide, then write. Their logic is a generator that yields the steps below and receives
each one's reply; `Producer` and `AsyncProducer` each run the steps on their own client
(`run_steps` there), so only the I/O is written twice.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from producer.scripts import ScriptCall

# Entries read per LRANGE / ZRANGE while looking for jobs that have not started.
SCAN_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class ReadFields:
    """Read these fields of each record (`HMGET`, pipelined): one list of values per record."""

    records: list[str]
    fields: tuple[str, ...]


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


@dataclass(frozen=True, slots=True)
class ReadList:
    """Read a whole list (`LRANGE key 0 -1`)."""

    key: str


@dataclass(frozen=True, slots=True)
class ReadSetSample:
    """Read up to `count` members of a set (`SRANDMEMBER key count`)."""

    key: str
    count: int


@dataclass(frozen=True, slots=True)
class Pause:
    """Wait this many seconds (for a worker to count a start it is about to)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Transaction:
    """Send these writes in one MULTI/EXEC: (method, args, kwargs) of a redis-py pipeline."""

    commands: list[tuple[str, tuple[Any, ...], dict[str, Any]]]


# What the steps ask a producer to do; a script call's reply is the script's.
Step = (
    ScriptCall | ReadFields | ReadReady | ReadDelayed | ReadList | ReadSetSample | Pause
    | Transaction
)  # fmt: skip


def ids_of_entries(entries: Iterable[bytes], wanted: set[str]) -> dict[str, bytes]:
    """The entries (job bytes) whose envelope's id is one of `wanted`, by id."""
    found: dict[str, bytes] = {}
    needles = [job_id.encode() for job_id in wanted]
    for raw in entries:
        for needle in needles:
            if needle not in raw:  # most entries: no parsing
                continue
            try:
                envelope = orjson.loads(raw)
            except orjson.JSONDecodeError:
                break
            if isinstance(envelope, dict) and envelope.get("id") in wanted:
                found.setdefault(envelope["id"], raw)
            break
    return found


def scan_entries(job_ids: Sequence[str]) -> Generator[Step, Any, dict[str, bytes]]:
    """Look for jobs that have not started in the ready list, then the delayed set, a chunk
    at a time; stop once all are found. Returns the bytes of each one found, by id."""
    wanted = set(job_ids)
    found: dict[str, bytes] = {}
    for read in (ReadReady, ReadDelayed):
        start = 0
        while wanted:
            entries = yield read(start, start + SCAN_CHUNK - 1)
            hits = ids_of_entries(entries, wanted)
            found.update(hits)
            wanted.difference_update(hits)
            if len(entries) < SCAN_CHUNK:
                break
            start += SCAN_CHUNK
    return found


def text(value: bytes | str | int) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
