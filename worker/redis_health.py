"""Tracks whether Redis is reachable, so an outage is logged once, not once per command."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog
from redis.backoff import ExponentialWithJitterBackoff

log = structlog.get_logger()


class RedisHealth:
    def __init__(self, redacted_url: str, on_recovered: Callable[[], None] | None = None) -> None:
        self._url = redacted_url
        self._on_recovered = on_recovered
        self._lock = threading.Lock()
        self._down_since: float | None = None

    @property
    def reachable(self) -> bool:
        return self._down_since is None

    def failed(self, error: BaseException, where: str) -> None:
        with self._lock:
            if self._down_since is not None:
                return
            self._down_since = time.monotonic()
        log.warning(
            "redis.unavailable",
            redis=self._url,
            where=where,
            error=f"{type(error).__name__}: {error}",
        )

    def succeeded(self) -> None:
        if self._down_since is None:  # the common case, without taking the lock
            return
        with self._lock:
            if self._down_since is None:
                return
            outage = time.monotonic() - self._down_since
            self._down_since = None
        log.info("redis.recovered", redis=self._url, outage_s=round(outage, 3))
        if self._on_recovered is not None:
            self._on_recovered()


class ReconnectDelay:
    """Capped exponential delays with jitter between reconnect attempts (redis-py's backoff)."""

    def __init__(self, base: float = 0.05, cap: float = 5.0) -> None:
        self._backoff = ExponentialWithJitterBackoff(base=base, cap=cap)
        self._failures = 0

    def next_delay(self) -> float:
        self._failures += 1
        return float(self._backoff.compute(self._failures))

    @property
    def failures(self) -> int:
        return self._failures

    def reset(self) -> None:
        self._failures = 0
