"""When delayed jobs fall due: a delay after the push, or a start time.

Delayed jobs wait in `coroq:{Q}:delayed`, scored by their due time in epoch milliseconds
(docs/protocol.md#keys); workers move the due ones to the consuming end of the ready list
each time they take jobs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from producer.errors import InvalidSchedule

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Schedule:
    """`delay` seconds after the push, or at the epoch millisecond `at_ms` (one of the two)."""

    delay: float = 0.0
    at_ms: int | None = None

    def due_ms(self, now: float) -> int:
        """The due time (epoch ms) of a job pushed at `now` (epoch s), never early."""
        if self.at_ms is not None:
            return self.at_ms
        return math.ceil((now + self.delay) * 1000)

    def describe(self, now: float) -> str:
        due = datetime.fromtimestamp(self.due_ms(now) / 1000, UTC)
        return f"due at {due.isoformat(timespec='milliseconds').replace('+00:00', 'Z')}"


def epoch_ms(at: datetime) -> int:
    """`at` (an aware datetime) in epoch milliseconds, rounded up, without float noise."""
    return -((_EPOCH - at) // _ONE_MS)


def delay_seconds(delay: float | timedelta, *, name: str = "delay") -> float:
    """A delay as seconds; an error when it is not a finite number of seconds >= 0."""
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise InvalidSchedule(f"{name} must be seconds (a number) or a timedelta, got {delay!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidSchedule(f"{name} must be 0 or more seconds, got {delay!r}")
    return float(seconds)


def make_schedule(
    delay: float | timedelta | None = None,
    at: datetime | None = None,
    *,
    front: bool = False,
    names: tuple[str, str, str] = ("delay", "at", "front"),
) -> Schedule | None:
    """The schedule of a push, or None for a push to the ready list.

    A delay and a start time exclude each other, and both exclude a push to the front (the
    job would not run first anyway). `at` must carry a UTC offset; one in the past makes the
    job due at once. `names` are how the caller's options are called, for the messages.
    """
    delay_name, at_name, front_name = names
    if delay is not None and at is not None:
        raise InvalidSchedule(f"give {delay_name} or {at_name}, not both")
    if delay is None and at is None:
        return None
    if front:
        chosen = delay_name if delay is not None else at_name
        raise InvalidSchedule(
            f"{chosen} and {front_name} exclude each other: delayed jobs wait in the delayed "
            "set, not at the front of the ready list"
        )
    if delay is not None:
        return Schedule(delay=delay_seconds(delay, name=delay_name))
    if not isinstance(at, datetime):
        raise InvalidSchedule(f"{at_name} must be a datetime, got {at!r}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise InvalidSchedule(
            f"{at_name} {at.isoformat()} has no UTC offset: add one (e.g. +01:00) or Z for UTC"
        )
    return Schedule(at_ms=epoch_ms(at))


def parse_at(text: str, *, name: str = "--at") -> datetime:
    """An ISO-8601 time with a UTC offset or Z, e.g. `2026-12-01T09:00:00+01:00`."""
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidSchedule(
            f"{name}: invalid ISO-8601 time {text!r}: use e.g. 2026-12-01T09:00:00+01:00"
        ) from None
    if at.tzinfo is None or at.utcoffset() is None:
        raise InvalidSchedule(
            f"{name}: {text!r} has no UTC offset: add one (e.g. +01:00) or Z for UTC"
        )
    return at
