"""The loop that pushes periodic jobs (docs/scheduling.md#periodic-jobs), on the event loop.

Every worker runs it for every schedule it knows (the periodic tasks of its registry and its
`[schedules]` tables). It sleeps until the next tick of any of them, then runs tick.lua for
each schedule due: the first worker to do so pushes the tick's job and moves the schedule's
next tick past it, in one step, so the job is pushed once whatever the number of workers,
and a worker (re)started later finds the tick done. At its start it runs the script for every
schedule: a new or changed schedule is armed for its next tick; ticks missed while no worker
ran are skipped, or run once with `catch_up`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis
import structlog

from producer.envelope import build_envelope
from producer.errors import CoroqError
from worker.jobs.queues import AsyncQueue
from worker.registry import TaskRegistry
from worker.schedules import Schedule
from worker.settings import WorkerSettings

log = structlog.get_logger()

# A tick pushed later than this after its time counts as missed (at most half a period).
LONGEST_GRACE = 60.0
# How long to wait before trying again after Redis failed.
RETRY_AFTER = 1.0
# The longest sleep: the loop looks again at least this often (clock changes, restarts).
LONGEST_SLEEP = 60.0


class ScheduleConfigError(CoroqError):
    """Schedules that cannot run together; the message names the schedule."""


def all_schedules(settings: WorkerSettings, registry: TaskRegistry) -> list[Schedule]:
    """The periodic tasks of the registry, then the `[schedules]` tables; each with the
    queue its jobs go to. Raises `ScheduleConfigError` for a schedule of an unknown task, two
    schedules of one name, or a queue this worker does not serve."""
    found: dict[str, Schedule] = {}
    for schedule in [*registry.schedules(), *settings.schedule_list()]:
        if schedule.name in found:
            raise ScheduleConfigError(
                f"schedule {schedule.name!r} is given twice (by @task and in [schedules])"
            )
        if schedule.task not in registry.names():
            raise ScheduleConfigError(
                f"schedule {schedule.name!r}: task {schedule.task!r} is not registered"
            )
        queue = schedule.queue or settings.queues[0]
        if queue not in settings.queues:
            raise ScheduleConfigError(
                f"schedule {schedule.name!r}: queue {queue!r} is not one this worker serves "
                f"({', '.join(settings.queues)})"
            )
        found[schedule.name] = schedule
    return list(found.values())


class Scheduler:
    def __init__(self, schedules: list[tuple[Schedule, AsyncQueue]]) -> None:
        self._schedules = schedules
        self._next: dict[str, float] = {schedule.name: 0.0 for schedule, _ in schedules}

    async def run(self) -> None:
        """Push ticks until cancelled."""
        if not self._schedules:
            return
        while True:
            now = time.time()
            for schedule, queue in self._schedules:
                if self._next[schedule.name] <= now:
                    self._next[schedule.name] = await self._tick(schedule, queue, now)
            wake = min(self._next.values())
            await asyncio.sleep(min(LONGEST_SLEEP, max(0.0, wake - time.time())))

    async def _tick(self, schedule: Schedule, queue: AsyncQueue, now: float) -> float:
        """Run tick.lua for the schedule; returns when to look at it next."""
        due = schedule.last_at_or_before(now)
        following = schedule.next_after(now)
        grace = min(LONGEST_GRACE, max(0.5, (following - due) / 2))
        job_id = f"schedule:{schedule.name}:{round(due * 1000)}"
        envelope = _envelope(schedule, job_id, now)
        call = queue.protocol.tick(
            schedule.name, schedule.spec, now, due, following, grace, schedule.catch_up,
            envelope, job_id,
        )  # fmt: skip
        try:
            what, next_tick, missed = await queue.run(call)
        except redis.RedisError as exc:
            log.warning("schedule.tick_failed", schedule=schedule.name, error=str(exc))
            return now + RETRY_AFTER
        what = what.decode() if isinstance(what, bytes) else str(what)
        if missed or what == "skipped":
            log.warning(
                "schedule.missed",
                schedule=schedule.name,
                latest_tick=due,
                pushed=what == "pushed",
                catch_up=schedule.catch_up,
            )
        if what == "pushed":
            late_ms = round((now - due) * 1000, 1)
            log.info(
                "schedule.pushed",
                schedule=schedule.name,
                task=schedule.task,
                job_id=job_id,
                queue=queue.protocol.keys.queue,
                late_ms=late_ms,
            )
        elif what == "armed":
            log.info("schedule.armed", schedule=schedule.name, next_tick=float(next_tick))
        return float(next_tick)


def _envelope(schedule: Schedule, job_id: str, now: float) -> bytes:
    args: tuple[Any, ...] = schedule.args if isinstance(schedule.args, tuple) else ()
    kwargs: dict[str, Any] = schedule.args if isinstance(schedule.args, dict) else {}
    envelope = build_envelope(schedule.task, args, kwargs, job_id=job_id)
    envelope.__dict__["enqueued_at"] = now  # valid by construction (see `stamp`)
    return envelope.to_json()
