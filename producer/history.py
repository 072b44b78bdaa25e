"""Each queue's throughput over the last hour: jobs that succeeded and jobs that ended dead,
per minute, as the workers keep it in Redis (docs/protocol.md#keys).

`coroq:{Q}:history` is a hash with fields `<minute>:ok` and `<minute>:failed`, `<minute>` being
the unix minute (epoch seconds // 60, the worker's clock) in which the jobs ended. Every worker
counts in memory and adds its counts with its heartbeat (worker/jobs/lua/history.lua), which
also deletes the minutes older than `MINUTES_KEPT`; the key expires `HISTORY_TTL_S` after its
last write, so the history of a queue no worker serves any more goes away.

This module owns the field names (the workers write through `history_field`) and reads them:
`read_history` costs one pipeline of one HGETALL per queue, whatever the number of workers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import redis

from producer.keys import QueueKeys

Outcome = Literal["ok", "failed"]
OK: Final[Outcome] = "ok"  # the job succeeded
FAILED: Final[Outcome] = "failed"  # the job ended dead (dead-lettered, failed for good)

# Minutes the hash keeps: the current one and the 60 before it, so a full hour always reads
# back whole, the minute under way included.
MINUTES_KEPT: Final = 61
# How long the hash outlives its last write: the history of a queue nobody works on any more
# disappears, while a quiet hour on a live queue keeps what is left of it.
HISTORY_TTL_S: Final = 2 * 60 * 60
SECONDS_PER_MINUTE: Final = 60


@dataclass(frozen=True, slots=True)
class MinuteCounts:
    """One minute of a queue's history: when it starts (epoch seconds), how many jobs
    succeeded in it and how many ended dead."""

    minute_start: float
    ok: int
    failed: int


def minute_of(at: float) -> int:
    """The unix minute of an epoch time: the number of whole minutes since the epoch."""
    return int(at // SECONDS_PER_MINUTE)


def history_field(minute: int, outcome: Outcome) -> str:
    """The field of the history hash that counts `outcome` in `minute`."""
    return f"{minute}:{outcome}"


def read_history(
    client: redis.Redis, queues: Sequence[QueueKeys], *, now: float, minutes: int = 60
) -> dict[str, list[MinuteCounts]]:
    """Each queue's last `minutes` minutes up to `now` (epoch seconds), oldest first, the
    minute under way last; minutes with no job are zeros. One round trip (one HGETALL per
    queue, in one pipeline)."""
    _check_minutes(minutes)
    pipe = client.pipeline(transaction=False)
    for keys in queues:
        pipe.hgetall(keys.history)
    replies = pipe.execute()
    return {
        keys.queue: history_of(fields, now=now, minutes=minutes)
        for keys, fields in zip(queues, replies, strict=True)
    }


def history_of(
    fields: Mapping[bytes, bytes] | Mapping[str, str], *, now: float, minutes: int = 60
) -> list[MinuteCounts]:
    """The minutes of one history hash (as HGETALL returns it, from a blocking or an asyncio
    client), as `read_history` gives them. Fields outside the window, or not of the layout,
    are left out."""
    _check_minutes(minutes)
    last = minute_of(now)
    first = last - minutes + 1
    ok = [0] * minutes
    failed = [0] * minutes
    for name, value in fields.items():
        parsed = _parse(name, value)
        if parsed is None:
            continue
        minute, outcome, count = parsed
        if first <= minute <= last:
            (ok if outcome == OK else failed)[minute - first] += count
    return [
        MinuteCounts(float((first + i) * SECONDS_PER_MINUTE), ok[i], failed[i])
        for i in range(minutes)
    ]


def _parse(name: bytes | str, value: bytes | str) -> tuple[int, Outcome, int] | None:
    text = name.decode(errors="replace") if isinstance(name, bytes) else name
    minute, _, outcome = text.partition(":")
    if outcome not in (OK, FAILED):
        return None
    try:
        return int(minute), OK if outcome == OK else FAILED, int(value)
    except ValueError:
        return None


def _check_minutes(minutes: int) -> None:
    if not 1 <= minutes <= MINUTES_KEPT:
        raise ValueError(f"minutes must be from 1 to {MINUTES_KEPT} (what the workers keep)")
