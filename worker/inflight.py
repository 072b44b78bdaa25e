"""The jobs a worker has taken and not finished, with the futures that run them."""

from __future__ import annotations

import concurrent.futures
import threading
from collections import Counter
from typing import Any

from worker.job import ReceivedJob


class InFlight:
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._futures: dict[concurrent.futures.Future[Any], ReceivedJob] = {}
        self._raws: Counter[bytes] = Counter()

    def add(self, job: ReceivedJob, future: concurrent.futures.Future[Any]) -> None:
        with self._condition:
            self._futures[future] = job
            self._raws[job.raw] += 1

    def remove(self, future: concurrent.futures.Future[Any]) -> ReceivedJob | None:
        with self._condition:
            job = self._futures.pop(future, None)
            if job is not None:
                self._raws[job.raw] -= 1
                if self._raws[job.raw] <= 0:
                    del self._raws[job.raw]
            if not self._futures:
                self._condition.notify_all()
            return job

    def holds(self, raw: bytes) -> bool:
        with self._condition:
            return raw in self._raws

    def __len__(self) -> int:
        with self._condition:
            return len(self._futures)

    def wait_empty(self, timeout: float | None) -> bool:
        with self._condition:
            return self._condition.wait_for(lambda: not self._futures, timeout)
