"""`cancel_until_done`: how the worker's close ends its housekeeping loops, even one that
swallowed a cancel (as `asyncio.wait_for` does on Python 3.11 when the call it waits for
ends as the cancel arrives)."""

from __future__ import annotations

import asyncio

from worker.process.housekeeping import cancel_until_done, describe_task


async def _swallows_cancels(budget: list[int], ended: list[str]) -> None:
    """Sleeps, swallowing as many cancels as `budget[0]` (which the test may change)."""
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if budget[0] == 0:
                ended.append("cancelled")
                raise
            budget[0] -= 1


def test_a_task_that_swallows_the_first_cancel_is_cancelled_again() -> None:
    async def scenario() -> tuple[set[asyncio.Task[None]], list[str]]:
        ended: list[str] = []
        tasks = [asyncio.create_task(_swallows_cancels([times], ended)) for times in (0, 1, 3)]
        await asyncio.sleep(0)
        left = await cancel_until_done(tasks, within=5.0)
        return left, ended

    left, ended = asyncio.run(scenario())
    assert left == set()
    assert ended == ["cancelled"] * 3


def test_a_task_that_never_ends_is_returned_after_the_time_given() -> None:
    async def scenario() -> tuple[set[asyncio.Task[None]], str]:
        ended: list[str] = []
        budget = [10**9]
        stubborn = asyncio.create_task(_swallows_cancels(budget, ended), name="stubborn")
        await asyncio.sleep(0)
        left = await cancel_until_done([stubborn], within=0.3)
        report = describe_task(stubborn)
        budget[0] = 0  # leave no task behind
        stubborn.cancel()
        await asyncio.gather(stubborn, return_exceptions=True)
        return left, report

    left, report = asyncio.run(scenario())
    assert [task.get_name() for task in left] == ["stubborn"]
    assert report.startswith("stubborn: ")
    assert "_swallows_cancels" in report


def test_tasks_already_done_are_left_alone() -> None:
    async def scenario() -> set[asyncio.Task[None]]:
        async def quick() -> None:
            return None

        done = asyncio.create_task(quick())
        await done
        return await cancel_until_done([done], within=1.0)

    assert asyncio.run(scenario()) == set()
