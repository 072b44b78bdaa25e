"""The thread that owns the worker's asyncio event loop (uvloop's when installed).

Other threads reach the loop only through `submit` (`asyncio.run_coroutine_threadsafe`) and
`call_soon` (`loop.call_soon_threadsafe`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import threading
import traceback
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import structlog

log = structlog.get_logger()

T = TypeVar("T")

# How often the loop looks at its queue of ready callbacks even if nobody woke it.
# `call_soon_threadsafe` (how other threads hand the loop work) queues the callback, then wakes
# the loop so that it goes over that queue. In loaded full test runs, a worker's idle uvloop
# loop has been caught asleep in epoll_pwait for 20 s with a callback queued that way: the
# wake-up was lost, and on uvloop a timer firing does not go over the queue. A callback queued
# from the loop's own thread does, so a timer queues one this often: a lost wake-up then costs
# at most this long.
LOOK_AT_READY_EVERY = 0.25


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop  # noqa: PLC0415 - optional dependency
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def loop_implementation(loop: asyncio.AbstractEventLoop) -> str:
    return f"{type(loop).__module__}.{type(loop).__qualname__}"


class EventLoopThread:
    def __init__(self, name: str = "coroq-loop") -> None:
        self.loop = new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._look_at_ready)
        try:
            self.loop.run_forever()
        finally:
            # Closed here, in the loop's own thread: a connection left open (one a shutdown
            # could not close) has been seen to keep uvloop's close waiting for ever. The
            # thread is a daemon, and `stop` waits for it only until its timeout.
            self.loop.close()

    def _look_at_ready(self) -> None:
        self.loop.call_later(LOOK_AT_READY_EVERY, self.loop.call_soon, self._look_at_ready)

    def start(self, timeout: float = 10.0) -> None:
        """Start the thread and return once the loop is running."""
        self._thread.start()
        ready = threading.Event()
        self.loop.call_soon_threadsafe(ready.set)
        if not ready.wait(timeout):
            raise RuntimeError("the event loop did not start")

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the loop and wait for its result from another thread."""
        return self.submit(coroutine).result(timeout)

    def call_soon(self, callback: Callable[..., object], *args: object) -> None:
        self.loop.call_soon_threadsafe(callback, *args)

    @property
    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stack(self) -> str:
        """Where the loop's thread is now (to report a loop that does not answer)."""
        frame = sys._current_frames().get(self._thread.ident or -1)
        return "" if frame is None else "".join(traceback.format_stack(frame))

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop and wait up to `timeout` seconds for its thread to close it."""
        if self.loop.is_closed():
            return
        if self._thread.ident is None:  # never started
            self.loop.close()
            return
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("worker.loop_not_closed", timeout_s=timeout)
