"""Periodic jobs (docs/scheduling.md#periodic-jobs): what a schedule is, and when it ticks.

A schedule is a cron expression (5 fields, or 6 with seconds first) in a time zone, or a
period (`every`). Every worker computes the same ticks from it: cron ticks come from croniter,
periods are aligned on the epoch (every 30 s: at :00 and :30 of each minute). Which worker
pushes a tick's job, exactly once, is settled in Redis (worker/jobs/lua/tick.lua); this
module only does the arithmetic.

Daylight-saving changes are handled as cron users expect: a time skipped when clocks go
forward runs at the first minute after the gap; a time that occurs twice when clocks go back
runs once, unless the hour field is a wildcard (`*`, `*/2`), whose jobs follow the hours as
they pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from producer.durations import parse_duration

if TYPE_CHECKING:
    from croniter import croniter

# The shortest period (and a cron expression cannot tick more often than each second).
MIN_PERIOD = 1.0


class ScheduleError(ValueError):
    """A schedule that cannot be used; the message names the option."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a task is pushed by itself, and with what."""

    name: str  # the task's name, or the key of its `[schedules]` table
    task: str
    cron: str | None = None
    every: float | None = None
    timezone: str = "UTC"
    args: tuple[Any, ...] | dict[str, Any] = ()
    catch_up: bool = False
    queue: str | None = None  # None: the first queue the worker serves

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every is None):
            raise ScheduleError("give cron= or every=, not both")
        try:
            self._zone()
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(f"timezone: unknown time zone {self.timezone!r}") from None
        if self.cron is not None and not _croniter().is_valid(
            self.cron, second_at_beginning=self._with_seconds()
        ):
            raise ScheduleError(
                f"cron: invalid expression {self.cron!r} (5 fields, or 6 with seconds first)"
            )
        if self.every is not None and not (math.isfinite(self.every) and self.every >= MIN_PERIOD):
            raise ScheduleError(f"every: {self.every!r} s is not a period of at least 1 s")
        try:
            orjson.dumps(self.args)
        except TypeError as exc:
            raise ScheduleError(f"schedule_args: not JSON: {exc}") from None

    def _zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def _with_seconds(self) -> bool:
        return self.cron is not None and len(self.cron.split()) == 6

    @property
    def spec(self) -> str:
        """How it ticks, in one line (also how a change of schedule is noticed)."""
        when = f"cron {self.cron} {self.timezone}" if self.cron else f"every {self.every:g}s"
        return orjson.dumps(
            {
                "task": self.task,
                "when": when,
                "args": self.args,
                "catch_up": self.catch_up,
            }
        ).decode()

    def next_after(self, moment: float) -> float:
        """The first tick strictly after `moment` (epoch seconds)."""
        if self.every is not None:
            return (math.floor(moment / self.every) + 1) * self.every
        zone = self._zone()
        start = datetime.fromtimestamp(moment, zone)
        ticks = _croniter()(str(self.cron), start, second_at_beginning=self._with_seconds())
        while True:
            tick: datetime = ticks.get_next(datetime)
            if not (self._fixed_hour() and _second_of_a_repeated_time(tick, zone)):
                return tick.timestamp()

    def last_at_or_before(self, moment: float) -> float:
        """The latest tick at or before `moment`."""
        if self.every is not None:
            return math.floor(moment / self.every) * self.every
        zone = self._zone()
        start = datetime.fromtimestamp(moment, zone)
        ticks = _croniter()(str(self.cron), start, second_at_beginning=self._with_seconds())
        nearest = self.next_after(moment - 1e-6)  # a tick exactly at `moment` counts
        if nearest <= moment:
            return nearest
        while True:
            tick: datetime = ticks.get_prev(datetime)
            if not (self._fixed_hour() and _second_of_a_repeated_time(tick, zone)):
                return tick.timestamp()

    def _fixed_hour(self) -> bool:
        fields = str(self.cron).split()
        hour = fields[2] if len(fields) == 6 else fields[1]
        return "*" not in hour


def _croniter() -> type[croniter]:
    # Imported on first use: a worker with no cron schedule does not carry it (about 1 MB).
    from croniter import croniter  # noqa: PLC0415

    return croniter


def _second_of_a_repeated_time(tick: datetime, zone: ZoneInfo) -> bool:
    """Whether `tick` is the second occurrence of a wall-clock time (clocks went back)."""
    wall = tick.replace(tzinfo=None)
    first = wall.replace(tzinfo=zone, fold=0).utcoffset()
    second = wall.replace(tzinfo=zone, fold=1).utcoffset()
    return first != second and tick.utcoffset() == second


def period_of(every: float | str) -> float:
    """`every=30`, `"30s"`, `"5m"`: the period in seconds."""
    if isinstance(every, bool):
        raise ScheduleError(f"every: {every!r} is not a period")
    if isinstance(every, int | float):
        return float(every)
    try:
        return parse_duration(every)
    except ValueError as exc:
        raise ScheduleError(f"every: {exc}") from None


def schedule_of(
    name: str,
    task: str,
    *,
    cron: str | None,
    every: float | str | None,
    timezone: str | None,
    args: Sequence[Any] | dict[str, Any] | None,
    catch_up: bool,
    queue: str | None,
) -> Schedule | None:
    """The schedule these options describe (None when they describe none)."""
    if cron is None and every is None:
        if timezone is not None or args is not None or catch_up:
            raise ScheduleError("timezone, schedule_args and catch_up need cron= or every=")
        return None
    if timezone is not None and cron is None:
        raise ScheduleError("timezone: only a cron schedule has one")
    arguments: tuple[Any, ...] | dict[str, Any]
    if args is None:
        arguments = ()
    elif isinstance(args, dict):
        arguments = dict(args)
    elif isinstance(args, list | tuple):
        arguments = tuple(args)
    else:
        raise ScheduleError(f"schedule_args: a list or a dict, not {type(args).__name__}")
    return Schedule(
        name,
        task,
        cron=cron,
        every=None if every is None else period_of(every),
        timezone=timezone or "UTC",
        args=arguments,
        catch_up=catch_up,
        queue=queue,
    )
