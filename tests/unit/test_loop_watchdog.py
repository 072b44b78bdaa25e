"""The loop-lag watchdog against a real event loop in its own thread: it probes seldom while
no job is in flight, and reports a blocked loop, naming the job, once jobs run."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.conftest import wait_for
from worker.process.watchdog import LoopWatchdog


class CountingLoop:
    """A running loop whose thread-safe calls (the watchdog's probes) are counted."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.calls = 0
        post = self.loop.call_soon_threadsafe

        def counting(callback: Any, *args: Any) -> asyncio.Handle:
            self.calls += 1
            return post(callback, *args)

        self.loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def block(self, seconds: float) -> None:
        """Make the loop run blocking code, as a handler calling time.sleep would."""
        self.loop.call_soon_threadsafe(time.sleep, seconds)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


@pytest.fixture
def counting_loop() -> Iterator[CountingLoop]:
    loop = CountingLoop()
    yield loop
    loop.close()


def make_watchdog(
    loop: CountingLoop, busy: Callable[[], bool], *, threshold: float = 0.5, **timings: float
) -> LoopWatchdog:
    """A watchdog whose reports name job-1 (the job the loop would be running)."""
    return LoopWatchdog(
        loop.loop,
        lambda task: {"job_id": "job-1", "task": "slow"},
        threshold=threshold,
        busy=busy,
        **timings,
    )


def test_an_idle_worker_is_probed_seldom_and_a_block_under_work_is_reported(
    counting_loop: CountingLoop,
) -> None:
    busy = False
    watchdog = make_watchdog(
        counting_loop, lambda: busy, threshold=0.1, interval=0.01, idle_interval=0.5
    )
    with capture_logs() as logs:
        watchdog.start()
        time.sleep(0.3)
        assert counting_loop.calls == 0  # idle: no probe in 30 busy intervals

        busy = True
        wait_for(lambda: counting_loop.calls >= 3, timeout=5)  # the busy pace, within 0.5 s
        counting_loop.block(0.4)
        wait_for(lambda: any(entry["event"] == "loop.unblocked" for entry in logs), timeout=5)
        watchdog.stop()
    assert not watchdog.is_alive()
    blocked = [entry for entry in logs if entry["event"] == "loop.blocked"]
    assert len(blocked) == 1
    assert blocked[0]["job_id"] == "job-1"
    assert blocked[0]["blocked_ms"] >= 100
    unblocked = [entry for entry in logs if entry["event"] == "loop.unblocked"]
    assert len(unblocked) == 1
    assert unblocked[0]["job_id"] == "job-1"
    assert 300 <= unblocked[0]["blocked_ms"] < 5000  # the 0.4 s block, probed after it began


def test_a_worker_busy_at_start_is_probed_at_once(counting_loop: CountingLoop) -> None:
    watchdog = make_watchdog(counting_loop, lambda: True, interval=0.01, idle_interval=60)
    watchdog.start()
    try:
        wait_for(lambda: counting_loop.calls >= 3, timeout=2)
    finally:
        watchdog.stop()
    assert not watchdog.is_alive()


def test_stopping_an_idle_watchdog_does_not_wait_for_its_idle_pause(
    counting_loop: CountingLoop,
) -> None:
    watchdog = make_watchdog(counting_loop, lambda: False, idle_interval=60)
    watchdog.start()
    time.sleep(0.05)
    began = time.monotonic()
    watchdog.stop()
    assert not watchdog.is_alive()
    assert time.monotonic() - began < 5  # far from the 60 s pause


def test_an_idle_worker_looks_for_work_often_but_probes_the_loop_seldom(
    counting_loop: CountingLoop,
) -> None:
    watchdog = make_watchdog(
        counting_loop, lambda: False, interval=0.01, idle_interval=0.02, idle_probe_interval=0.4
    )
    watchdog.start()
    time.sleep(1.0)
    watchdog.stop()
    assert 1 <= counting_loop.calls <= 4  # about 50 looks for work, a probe every 0.4 s
    assert 0 <= watchdog.lag_seconds < 0.5
