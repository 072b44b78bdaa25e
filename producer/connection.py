"""Redis clients configured the same way everywhere, and URL redaction for logs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.connection
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff
from redis.connection import HiredisRespSerializer
from redis.exceptions import BusyLoadingError, OutOfMemoryError, ReadOnlyError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from redis.utils import HIREDIS_AVAILABLE

from producer.redis_urls import (
    SentinelUrl,
    is_cluster_url,
    is_sentinel_url,
    parse_cluster_url,
    parse_sentinel_url,
)

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
# Seconds a sentinel has to answer where the primary is before the next one is asked.
SENTINEL_TIMEOUT = 2.0

# Errors after which a command may be sent again on a fresh connection: the link broke or
# stalled, the server is loading its data (LOADING), or a failover left us on a replica
# (READONLY). redis-py drops the connection on each, so the next command reconnects.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    ReadOnlyError,
)


# Replies of a server in the middle of a failover or a restart. A script that meets one
# reports it inside a generic error ("Error running script ... -READONLY ..."), so they are
# recognised by their text.
# OOM (a full Redis with maxmemory-policy noeviction) is waited out too: retrying loses
# nothing, and taking no new job meanwhile is the right back-pressure.
_PASSING_REPLIES = ("READONLY", "UNBLOCKED", "LOADING", "MASTERDOWN", "TRYAGAIN", "OOM")


def is_transient(error: BaseException) -> bool:
    """Whether waiting (and reconnecting) can cure the error: the link broke or stalled, the
    server is loading, a failover ended a blocking command (UNBLOCKED) or left us on a
    replica (READONLY), a replica lost its primary (MASTERDOWN), or Redis is full (OOM)."""
    if isinstance(error, (*TRANSIENT_ERRORS, OutOfMemoryError)):
        return True
    if isinstance(error, ResponseError):
        text = str(error)
        return any(text.startswith(reply) or f"-{reply} " in text for reply in _PASSING_REPLIES)
    return False


def needs_reconnect(error: BaseException) -> bool:
    """A reply that says this server is not (or no longer) the primary: a new connection may
    reach the one that is (after a DNS or proxy switch)."""
    if not is_transient(error) or isinstance(error, (*TRANSIENT_ERRORS, OutOfMemoryError)):
        return False
    return "OOM" not in str(error)


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
    """A blocking client for any URL coroq takes (producer/redis_urls.py)."""
    options: dict[str, Any] = {
        "retry": Retry(_backoff(), retries),
        "retry_on_error": list(TRANSIENT_ERRORS),
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": 5.0,
        "health_check_interval": 30,
    }
    if is_cluster_url(url):
        cluster = parse_cluster_url(url)
        return redis.cluster.RedisCluster(  # type: ignore[return-value]  # the same commands
            startup_nodes=[
                redis.cluster.ClusterNode(host, port)  # type: ignore[no-untyped-call]
                for host, port in cluster.nodes
            ],
            username=cluster.username,
            password=cluster.password,
            ssl=cluster.tls,
            socket_timeout=socket_timeout,
            socket_connect_timeout=5.0,
        )
    if is_sentinel_url(url):
        target = parse_sentinel_url(url)
        sentinel = redis.sentinel.Sentinel(
            target.sentinels, sentinel_kwargs=_sentinel_options(target)
        )
        client: redis.Redis = sentinel.master_for(
            target.service, **_node_options(target), **options
        )
        return client
    return redis.Redis.from_url(url, **options)


def async_node_client(url: str, host: str, port: int) -> redis.asyncio.Redis:
    """A plain asyncio client of one node of the Cluster that `url` names (its credentials and
    TLS), for commands already routed to the node that serves their slot."""
    cluster = parse_cluster_url(url)
    client = redis.asyncio.Redis(
        host=host,
        port=port,
        username=cluster.username,
        password=cluster.password,
        ssl=cluster.tls,
        socket_timeout=10.0,
        socket_connect_timeout=5.0,
    )
    return _packing_with_hiredis(client)


def is_cluster_client(client: object) -> bool:
    """Whether the client speaks to a Redis Cluster."""
    return isinstance(client, redis.cluster.RedisCluster | redis.asyncio.cluster.RedisCluster)


def _sentinel_options(target: SentinelUrl) -> dict[str, Any]:
    """How to talk to the sentinels themselves: briefly (each is asked in turn)."""
    return {
        "socket_timeout": SENTINEL_TIMEOUT,
        "socket_connect_timeout": SENTINEL_TIMEOUT,
        "username": target.sentinel_username,
        "password": target.sentinel_password,
        "ssl": target.tls,
    }


def _node_options(target: SentinelUrl) -> dict[str, Any]:
    """How to talk to the primary the sentinels name."""
    options: dict[str, Any] = {"db": target.db, "ssl": target.tls}
    if target.username is not None:
        options["username"] = target.username
    if target.password is not None:
        options["password"] = target.password
    return options


def async_client(
    url: str, *, retries: int = 3, max_connections: int | None = None
) -> redis.asyncio.Redis:
    """An asyncio client. With `max_connections`, a call that finds them all in use waits for
    one (a producer's `gather` of a thousand `submit` calls), where redis-py's default pool
    would fail it."""
    options: dict[str, Any] = {
        "retry": AsyncRetry(_backoff(), retries),
        "retry_on_error": list(TRANSIENT_ERRORS),
        "socket_timeout": 10.0,
        "socket_connect_timeout": 5.0,
        "health_check_interval": 30,
    }
    if is_cluster_url(url):
        cluster = parse_cluster_url(url)
        return redis.asyncio.cluster.RedisCluster(  # type: ignore[return-value]
            startup_nodes=[
                redis.asyncio.cluster.ClusterNode(host, port) for host, port in cluster.nodes
            ],
            username=cluster.username,
            password=cluster.password,
            ssl=cluster.tls,
            socket_timeout=10.0,
            socket_connect_timeout=5.0,
        )
    if is_sentinel_url(url):
        target = parse_sentinel_url(url)
        sentinel = redis.asyncio.sentinel.Sentinel(
            target.sentinels, sentinel_kwargs=_sentinel_options(target)
        )
        found: redis.asyncio.Redis = sentinel.master_for(
            target.service, **_node_options(target), **options
        )
        return found
    if max_connections is None:
        client = redis.asyncio.Redis.from_url(url, **options)
    else:
        blocking = redis.asyncio.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=None, **options
        )
        client = redis.asyncio.Redis.from_pool(blocking)
    return _packing_with_hiredis(client)


def _packing_with_hiredis(client: redis.asyncio.Redis) -> redis.asyncio.Redis:
    """The client, its new connections packing commands in C when hiredis is installed."""
    if HIREDIS_AVAILABLE:
        pool = client.connection_pool
        pool.connection_class = _HIREDIS_PACKING.get(pool.connection_class, pool.connection_class)
    return client


class _CommandPacker(Protocol):
    def pack(self, *args: Any) -> list[bytes]: ...


# The typed seam to redis-py's hiredis packer: some releases ship it without annotations
# (redis 8.2's __init__), so strict mypy is told here, once, what coroq relies on: a
# constructor without arguments and pack(*args) -> list[bytes].
_new_command_packer: Callable[[], _CommandPacker] = HiredisRespSerializer


class _HiredisPacking:
    """Packs commands with hiredis's C packer, as redis-py's blocking connections do when
    hiredis is installed; its asyncio connections pack in Python, which took a tenth of the
    worker's loop thread (a pipeline carries the outcomes of hundreds of jobs)."""

    _serializer = _new_command_packer()

    def pack_command(self, *args: Any) -> list[bytes]:
        return self._serializer.pack(*args)


class _HiredisTCPConnection(_HiredisPacking, redis.asyncio.Connection):
    pass


class _HiredisSSLConnection(_HiredisPacking, redis.asyncio.SSLConnection):
    pass


class _HiredisUnixConnection(_HiredisPacking, redis.asyncio.UnixDomainSocketConnection):
    pass


_HIREDIS_PACKING: dict[type[redis.asyncio.connection.AbstractConnection], Any] = {
    redis.asyncio.Connection: _HiredisTCPConnection,
    redis.asyncio.SSLConnection: _HiredisSSLConnection,
    redis.asyncio.UnixDomainSocketConnection: _HiredisUnixConnection,
}
