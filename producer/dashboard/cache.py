"""The overview as pages get it: read once for all of them, kept, and read again in the
background once it has aged, at a pace that keeps its cost in Redis within a budget."""

from __future__ import annotations

import asyncio
import time

import redis
import structlog

from producer.dashboard.overview import Overview, OverviewReader

log = structlog.get_logger()


class OverviewCache:
    """The last overview read, shared by every page. Once it is `interval` old, pages still get
    it at once while it is read again in the background (only the first read, and the first
    after an action, make a page wait). The interval grows with what a read costs, so that
    reads cost at most `budget` Redis commands a second."""

    def __init__(self, reader: OverviewReader, refresh: float, budget: float) -> None:
        self._reader = reader
        self._refresh = refresh
        self._budget = budget
        self._last: Overview | None = None
        self._stale = True  # the next page waits for a fresh read
        self._lock = asyncio.Lock()
        self._background: asyncio.Task[None] | None = None

    @property
    def interval(self) -> float:
        cost = self._last.commands if self._last is not None else 0
        return max(self._refresh, cost / self._budget)

    async def get(self) -> Overview:
        last = self._last
        if last is None or self._stale:
            return await self._read()
        if self._due(last) and (self._background is None or self._background.done()):
            self._background = asyncio.create_task(self._read_in_background())
        return last

    async def _read(self) -> Overview:
        async with self._lock:
            last = self._last
            if last is not None and not self._stale and not self._due(last):
                return last  # read meanwhile, for another page
            self._stale = False
            try:
                last = self._last = await asyncio.to_thread(self._reader.read)
            except BaseException:
                self._stale = True
                raise
            return last

    async def _read_in_background(self) -> None:
        try:
            await self._read()
        except redis.RedisError as exc:  # the next page reads again, and shows the error
            log.warning("dashboard.overview_not_read", error=f"{type(exc).__name__}: {exc}")

    def _due(self, last: Overview) -> bool:
        return time.time() - last.taken_at >= self.interval

    def known_queues(self) -> list[str]:
        return self._reader.known_queues()

    def include(self, queue: str) -> None:
        self._reader.include(queue)
        self._stale = True

    def forget(self) -> None:
        """After an action: the next page shows its effect."""
        self._stale = True
