"""The loop-lag watchdog against a real event loop in its own thread: it rests while no job
is in flight, and reports a blocked loop, naming the job, as soon as work arrives."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from worker.watchdog import LoopWatchdog


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


def wait_until(condition: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_an_idle_worker_is_not_probed_and_work_brings_the_probes_back(
    counting_loop: CountingLoop,
) -> None:
    busy = False
    watchdog = LoopWatchdog(
        counting_loop.loop,
        lambda task: {"job_id": "job-1", "task": "slow"},
        threshold=0.1,
        busy=lambda: busy,
        interval=0.01,
        idle_interval=60,
    )
    with capture_logs() as logs:
        watchdog.start()
        time.sleep(0.3)
        assert counting_loop.calls == 0  # resting: no probe in 30 busy intervals

        busy = True
        watchdog.work_arrived()
        assert wait_until(lambda: counting_loop.calls >= 3)
        counting_loop.block(0.4)
        assert wait_until(lambda: any(entry["event"] == "loop.unblocked" for entry in logs))
        watchdog.stop()
    assert not watchdog.is_alive()
    blocked = [entry for entry in logs if entry["event"] == "loop.blocked"]
    assert len(blocked) == 1
    assert blocked[0]["job_id"] == "job-1"
    assert watchdog.lag_seconds >= 0.1


def test_a_worker_busy_at_start_is_probed_at_once(counting_loop: CountingLoop) -> None:
    watchdog = LoopWatchdog(
        counting_loop.loop,
        lambda task: None,
        threshold=0.5,
        busy=lambda: True,
        interval=0.01,
        idle_interval=60,
    )
    watchdog.start()
    try:
        assert wait_until(lambda: counting_loop.calls >= 3, timeout=2)
    finally:
        watchdog.stop()
    assert not watchdog.is_alive()


def test_stopping_a_resting_watchdog_does_not_wait_for_its_idle_pause(
    counting_loop: CountingLoop,
) -> None:
    watchdog = LoopWatchdog(
        counting_loop.loop, lambda task: None, threshold=0.5, busy=lambda: False, idle_interval=60
    )
    watchdog.start()
    time.sleep(0.05)
    began = time.monotonic()
    watchdog.stop()
    assert not watchdog.is_alive()
    assert time.monotonic() - began < 5  # far from the 60 s pause


def test_in_flight_calls_its_listeners_when_the_first_job_comes() -> None:
    from concurrent.futures import Future
    from types import SimpleNamespace

    from worker.inflight import InFlight

    inflight = InFlight()
    woken: list[int] = []
    inflight.when_busy(lambda: woken.append(len(inflight)))
    first, second = Future[Any](), Future[Any]()
    inflight.add(SimpleNamespace(raw=b"a"), first)  # type: ignore[arg-type]
    inflight.add(SimpleNamespace(raw=b"b"), second)  # type: ignore[arg-type]
    assert woken == [1]  # once, with the job already in: busy() sees it
    inflight.remove(first)
    inflight.remove(second)
    inflight.add(SimpleNamespace(raw=b"c"), Future[Any]())  # type: ignore[arg-type]
    assert woken == [1, 1]
