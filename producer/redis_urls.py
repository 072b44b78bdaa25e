"""Redis URLs beyond redis-py's own: Sentinel (`redis+sentinel://`) and Cluster
(`redis+cluster://`).

`redis://`, `rediss://` (TLS: `ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile`, `ssl_cert_reqs` as
query parameters) and `unix://` are read by redis-py itself. A Sentinel URL names the
sentinels and the service; the client asks them where the primary is, and asks again after a
failover (docs/operations.md#redis-sentinel):

    redis+sentinel://[user:password@]host:port[,host:port...]/service[/db][?sentinel_password=...]

The credentials are the data nodes' (the primary's); sentinels that want a password of their
own take `sentinel_password` (and `sentinel_username`). A Cluster URL names some of its nodes;
the client learns the others and which serves which slot (docs/operations.md#redis-cluster):

    redis+cluster://[user:password@]host:port[,host:port...]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    sentinels: list[tuple[str, int]]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    tls: bool = False


CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


@dataclass(frozen=True, slots=True)
class ClusterUrl:
    nodes: list[tuple[str, int]]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False


def is_cluster_url(url: str) -> bool:
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


def parse_cluster_url(url: str) -> ClusterUrl:
    """Read a Cluster URL; ValueError naming what is wrong (never repeating a password)."""
    parts = urlsplit(url)
    username, password, hosts = _credentials(parts.netloc)
    nodes = [_address(text, 6379) for text in hosts.split(",") if text.strip()]
    if not nodes:
        raise ValueError("a Cluster URL names at least one node: redis+cluster://host:port")
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError("a Cluster has only database 0: nothing may follow the nodes")
    if parts.query:
        raise ValueError("a Cluster URL takes no parameters")
    return ClusterUrl(nodes, username, password, parts.scheme.lower().startswith("rediss"))


def _credentials(netloc: str) -> tuple[str | None, str | None, str]:
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        return None, None, hosts
    user, colon, secret = userinfo.partition(":")
    return unquote(user) or None, unquote(secret) if colon else None, hosts


def is_sentinel_url(url: str) -> bool:
    return url.partition("://")[0].lower() in SENTINEL_SCHEMES


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Read a Sentinel URL; ValueError naming what is wrong (never repeating a password)."""
    parts = urlsplit(url)
    username, password, hosts = _credentials(parts.netloc)
    sentinels = [_address(text, DEFAULT_SENTINEL_PORT) for text in hosts.split(",") if text.strip()]
    if not sentinels:
        raise ValueError(
            "a Sentinel URL names at least one sentinel: redis+sentinel://host:port/service"
        )
    path = [segment for segment in parts.path.split("/") if segment]
    if not path or len(path) > 2:
        raise ValueError("a Sentinel URL ends with /service or /service/db, e.g. /mymaster/0")
    db = 0
    if len(path) == 2:
        if not path[1].isdigit():
            raise ValueError(f"the database in a Sentinel URL is a number, not {path[1]!r}")
        db = int(path[1])
    query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    unknown = sorted(set(query) - {"sentinel_password", "sentinel_username"})
    if unknown:
        raise ValueError(f"unknown Sentinel URL parameter(s): {', '.join(unknown)}")
    return SentinelUrl(
        sentinels=sentinels,
        service=unquote(path[0]),
        db=db,
        username=username,
        password=password,
        sentinel_username=query.get("sentinel_username"),
        sentinel_password=query.get("sentinel_password"),
        tls=parts.scheme.lower().startswith("rediss"),
    )


def _address(text: str, default_port: int) -> tuple[str, int]:
    host, colon, port = text.strip().rpartition(":")
    if not colon:
        return text.strip(), default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not a node address: {text.strip()!r} (host:port)")
    return host.strip("[]"), int(port)
