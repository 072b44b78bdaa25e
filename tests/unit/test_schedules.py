"""When schedules tick (worker/schedules.py): cron with and without seconds, time zones and
their daylight-saving changes, periods aligned on the epoch; and the errors of bad options."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from worker.errors import TaskRegistrationError
from worker.registry import task
from worker.schedules import Schedule, ScheduleError, schedule_of

PARIS = ZoneInfo("Europe/Paris")


def at(*parts: int) -> float:
    return datetime(*parts, tzinfo=PARIS).timestamp()  # type: ignore[misc]


def ticks(schedule: Schedule, start: float, count: int) -> list[str]:
    found = []
    moment = start
    for _ in range(count):
        moment = schedule.next_after(moment)
        found.append(datetime.fromtimestamp(moment, PARIS).isoformat())
    return found


def test_a_daily_time_skipped_by_spring_forward_runs_once_after_the_gap() -> None:
    daily = Schedule("d", "t", cron="30 2 * * *", timezone="Europe/Paris")
    assert ticks(daily, at(2026, 3, 28, 12, 0), 2) == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]


def test_a_daily_time_repeated_by_fall_back_runs_once() -> None:
    daily = Schedule("d", "t", cron="30 2 * * *", timezone="Europe/Paris")
    assert ticks(daily, at(2026, 10, 24, 12, 0), 2) == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
    ]


def test_an_hourly_job_follows_the_hours_through_fall_back() -> None:
    hourly = Schedule("h", "t", cron="0 * * * *", timezone="Europe/Paris")
    assert ticks(hourly, at(2026, 10, 25, 1, 30), 3) == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T03:00:00+01:00",
    ]


def test_six_fields_put_seconds_first() -> None:
    every_five = Schedule("s", "t", cron="*/5 * * * * *")
    assert every_five.next_after(1000.0) == 1005.0
    assert every_five.last_at_or_before(1004.9) == 1000.0
    assert every_five.last_at_or_before(1005.0) == 1005.0


def test_periods_are_aligned_on_the_epoch_so_every_worker_agrees() -> None:
    half_minute = Schedule("e", "t", every=30.0)
    assert half_minute.next_after(100.0) == 120.0
    assert half_minute.last_at_or_before(100.0) == 90.0
    assert half_minute.last_at_or_before(120.0) == 120.0


def test_a_daily_cron_looks_back_to_its_last_tick() -> None:
    daily = Schedule("d", "t", cron="0 9 * * *", timezone="Europe/Paris")
    assert daily.last_at_or_before(at(2026, 12, 6, 8, 0)) == at(2026, 12, 5, 9, 0)
    assert daily.last_at_or_before(at(2026, 12, 6, 9, 0)) == at(2026, 12, 6, 9, 0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cron": "0 25 * * *"}, "cron: invalid expression"),
        ({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}, "timezone: unknown time zone"),
        ({"every": "0s"}, "every: 0.0 s is not a period"),
        ({"every": "fortnight"}, "every: invalid duration"),
        ({"every": 5, "timezone": "UTC"}, "timezone: only a cron schedule"),
        ({"cron": "* * * * *", "every": 5}, "not both"),
        ({"every": 5, "args": {1, 2}}, "schedule_args"),
        ({"timezone": "UTC"}, "need cron= or every="),
    ],
)
def test_bad_options_name_the_option(options: dict[str, object], message: str) -> None:
    arguments = {"cron": None, "every": None, "timezone": None, "args": None, "catch_up": False,
                 "queue": None, **options}  # fmt: skip
    with pytest.raises(ScheduleError, match=message):
        schedule_of("n", "t", **arguments)  # type: ignore[arg-type]


def test_the_task_decorator_names_the_task_and_the_option() -> None:
    with pytest.raises(TaskRegistrationError, match=r"task 'reports\.daily': cron: invalid"):
        task("reports.daily", cron="every morning")
    marked = task("reports.hourly", cron="0 * * * *", schedule_args=[1])
    assert marked is not None
