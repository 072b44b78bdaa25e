"""Redis outages: noticed, logged once (not once per command), and waited out.

`RedisHealth` tracks whether Redis is reachable. `SyncOutages` (the worker's threads, each with
its own blocking client) and `AsyncOutages` (the event loop's asyncio client) are the one
place that marks an outage, reconnects after a failover, backs off and tries again. A
transient error (the link broke, the server is loading or read-only: see
`producer.connection.is_transient`) is an outage; any other Redis error is the caller's, and
is raised at once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis
import redis.asyncio
import structlog
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import NoPermissionError

from producer.connection import is_transient, needs_reconnect
from producer.errors import RedisRefused, RedisUnavailable

log = structlog.get_logger()


# How Redis words a refusal of the ACL, from a command or from inside a script.
_REFUSALS = ("NOPERM", "no permissions to", "can't run this command")


def permission_refused(error: BaseException) -> bool:
    """Whether Redis refused a command to this user (ACL), inside a script or not."""
    if isinstance(error, NoPermissionError):
        return True
    return isinstance(error, redis.ResponseError) and any(
        refusal in str(error) for refusal in _REFUSALS
    )


class RedisHealth:
    def __init__(
        self,
        redacted_url: str,
        on_recovered: Callable[[], None] | None = None,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self._url = redacted_url
        self._on_recovered = on_recovered
        # A command the user may not run: a setting to fix, which waiting never cures.
        self._on_refused = on_refused
        self._refused = False
        self._lock = threading.Lock()
        self._down_since: float | None = None

    def refused(self, error: BaseException, where: str) -> None:
        """Redis refused a command (ACL): say so once, naming it, and let the worker stop."""
        with self._lock:
            if self._refused:
                return
            self._refused = True
        log.error(
            "redis.permission_denied",
            redis=self._url,
            where=where,
            error=str(error),
            detail="the Redis user lacks a permission coroq needs "
            "(docs/operations.md#acl-user); the worker stops",
        )
        if self._on_refused is not None:
            self._on_refused(str(error))

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


T = TypeVar("T")


class SyncOutages:
    """For a thread with its own blocking client."""

    def __init__(self, client: redis.Redis, health: RedisHealth) -> None:
        self._client = client
        self._health = health

    def failed(self, error: redis.RedisError, where: str) -> bool:
        """Note a failed command; False when the error is not an outage (the caller's).
        A command the user may not run stops the worker; meanwhile it is waited on as an
        outage, so each caller does not log it again."""
        if permission_refused(error):
            self._health.refused(error, where)
            return True
        if not is_transient(error):
            return False
        self._health.failed(error, where=where)
        if needs_reconnect(error):  # the next command may reach the new primary
            self._client.connection_pool.disconnect()
        return True

    def succeeded(self) -> None:
        self._health.succeeded()

    def call(self, command: Callable[[], T], *, where: str, stop: threading.Event) -> T:
        """Run `command` until it succeeds, waiting out outages; raises RedisUnavailable once
        `stop` is set during one (the worker is shutting down)."""
        delay = ReconnectDelay()
        while True:
            try:
                result = command()
            except redis.RedisError as exc:
                if permission_refused(exc):
                    self._health.refused(exc, where)
                    raise RedisRefused(str(exc)) from exc
                if not self.failed(exc, where):
                    raise
                if stop.wait(delay.next_delay()):
                    raise RedisUnavailable(str(exc)) from exc
            else:
                self._health.succeeded()
                return result


class AsyncOutages:
    """For coroutines on the worker's event loop and its asyncio client."""

    def __init__(self, client: redis.asyncio.Redis, health: RedisHealth) -> None:
        self._client = client
        self._health = health

    async def failed(self, error: redis.RedisError, where: str) -> bool:
        """Note a failed command; False when the error is not an outage (the caller's).
        As `SyncOutages.failed` for a command the user may not run."""
        if permission_refused(error):
            self._health.refused(error, where)
            return True
        if not is_transient(error):
            return False
        self._health.failed(error, where=where)
        if needs_reconnect(error):
            await self._client.connection_pool.disconnect()
        return True

    def succeeded(self) -> None:
        self._health.succeeded()

    async def call(
        self,
        command: Callable[[], Awaitable[T]],
        *,
        where: str,
        give_up_after: float | None = None,
    ) -> T:
        """Await `command()` until it succeeds, waiting out outages (at most `give_up_after`
        seconds when given; then the last error is raised)."""
        delay = ReconnectDelay()
        deadline = None if give_up_after is None else time.monotonic() + give_up_after
        while True:
            try:
                result = await command()
            except redis.RedisError as exc:
                if permission_refused(exc):
                    self._health.refused(exc, where)
                    raise RedisRefused(str(exc)) from exc
                if not await self.failed(exc, where):
                    raise
                pause = delay.next_delay()
                if deadline is not None and time.monotonic() + pause > deadline:
                    raise
                await asyncio.sleep(pause)
            else:
                self._health.succeeded()
                return result
