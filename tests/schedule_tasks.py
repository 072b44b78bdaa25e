"""Periodic tasks for the tests of docs/scheduling.md#periodic-jobs: loaded only by the
workers of those tests (the others would push their ticks into every test's queue)."""

from __future__ import annotations

from worker import task


@task("ticks.every_second", every=1)
async def every_second() -> str:
    return "tick"


@task("ticks.catching_up", every="2s", catch_up=True, schedule_args={"note": "late"})
async def catching_up(note: str) -> str:
    return note
