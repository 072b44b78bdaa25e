"""Redis clients configured the same way everywhere, and URL redaction for logs."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import BusyLoadingError, ReadOnlyError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

DEFAULT_REDIS_URL = "redis://localhost:6379/0"

# Errors after which a command may be sent again on a fresh connection: the link broke or
# stalled, the server is loading its data (LOADING), or a failover left us on a replica
# (READONLY). redis-py drops the connection on each, so the next command reconnects.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    ReadOnlyError,
)


def is_unblocked(error: Exception) -> bool:
    """A blocking command ended by the server (CLIENT UNBLOCK ERROR, a master turned replica)."""
    return isinstance(error, ResponseError) and str(error).startswith("UNBLOCKED")


def redact_url(url: str) -> str:
    """The URL with any password replaced by `***`, safe to log or print."""
    parts = urlsplit(url)
    userinfo, at, host_and_port = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host_and_port}"))


def _backoff() -> ExponentialWithJitterBackoff:
    return ExponentialWithJitterBackoff(base=0.05, cap=2.0)


def sync_client(url: str, *, retries: int = 3, socket_timeout: float | None = 10.0) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        retry=Retry(_backoff(), retries),
        retry_on_error=list(TRANSIENT_ERRORS),
        socket_timeout=socket_timeout,
        socket_connect_timeout=5.0,
        health_check_interval=30,
    )


def async_client(url: str, *, retries: int = 3) -> redis.asyncio.Redis:
    return redis.asyncio.Redis.from_url(
        url,
        retry=AsyncRetry(_backoff(), retries),
        retry_on_error=list(TRANSIENT_ERRORS),
        socket_timeout=10.0,
        socket_connect_timeout=5.0,
        health_check_interval=30,
    )
