"""Promoting the jobs that wait in a queue's delayed set for their time to the ready list, at
that time, for the times this worker knows of.

The consumers promote due jobs each time they take, but an idle consumer is blocked in its
pop until a job is pushed: so the worker promotes, at its due time, each retry it schedules,
and the jobs over their task's rate that it moved to the delayed set (pushing a job to the
ready list wakes the pop). Jobs over a rate are spread over time one interval apart; one timer
per queue follows them, from each due time to the next, up to the last one this worker moved.
"""

from __future__ import annotations

import asyncio
import time

import redis
import structlog

from worker.jobs.queues import AsyncQueue

log = structlog.get_logger()

# Promotions of one queue by one worker are at least this far apart (seconds): jobs due
# within it go together.
MIN_SPACING = 0.005


class Promoter:
    """The promotions of one queue that this worker has timed."""

    def __init__(self, queue: AsyncQueue) -> None:
        self._queue = queue
        self._background: set[asyncio.Future[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # epoch seconds
        self._follow_until = 0.0  # follow the delayed set's due times up to this one

    def once_at(self, delay: float) -> None:
        """Promote once, in `delay` seconds (a retry this worker scheduled)."""
        asyncio.get_running_loop().call_later(delay, self._promote_soon)

    def follow_until(self, due_ms: int) -> None:
        """Promote at `due_ms` (epoch ms), and from then on at each next due time up to it."""
        due = due_ms / 1000
        self._follow_until = max(self._follow_until, due)
        if self._timer is None or due < self._timer_at:
            self._set_timer(due)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _set_timer(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer_at = at
        self._timer = loop.call_later(max(0.0, at - time.time()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        task = asyncio.ensure_future(self._promote(follow=True))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _promote_soon(self) -> None:
        task = asyncio.ensure_future(self._promote(follow=False))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _promote(self, *, follow: bool) -> None:
        try:
            next_due_ms = await self._queue.promote()
        except redis.RedisError as exc:  # the next take promotes them anyway
            log.info("job.promote_failed", queue=self._queue.protocol.keys.queue, error=str(exc))
            next_due_ms = int((time.time() + 1) * 1000) if follow else -1
        if not follow or next_due_ms < 0 or self._timer is not None:
            return
        next_due = next_due_ms / 1000
        if next_due <= self._follow_until:
            self._set_timer(max(next_due, time.time() + MIN_SPACING))
