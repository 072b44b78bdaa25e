"""`worker health`: ask a running worker on this host whether it is live and ready.

It GETs `/healthz` then `/readyz` from the worker's HTTP endpoints (the same port and settings
as the worker), for Docker's HEALTHCHECK and for scripts. With `metrics_port = 0` there are no
endpoints, so it can only ping Redis, and says so.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass

import orjson
import redis

from producer.connection import sync_client
from worker.settings import WorkerSettings

DEFAULT_TIMEOUT = 3.0
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}  # noqa: S104 - mapped away


@dataclass(frozen=True, slots=True)
class HealthVerdict:
    ok: bool
    message: str


def base_url(settings: WorkerSettings) -> str:
    """Where this host reaches the worker's endpoints (loopback when it listens everywhere)."""
    host = _ANY_ADDRESS.get(settings.metrics_host, settings.metrics_host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.metrics_port}"


def probe_health(settings: WorkerSettings, timeout: float = DEFAULT_TIMEOUT) -> HealthVerdict:
    if settings.metrics_port == 0:
        return _probe_redis_only(settings, timeout)
    url = base_url(settings)
    for path in ("/healthz", "/readyz"):
        problem = _get_problem(url + path, timeout)
        if problem is not None:
            return HealthVerdict(False, f"{path} at {url}: {problem}")
    return HealthVerdict(True, f"live and ready: /healthz and /readyz answered 200 at {url}")


def _get_problem(url: str, timeout: float) -> str | None:
    """None when `url` answers 200, else what went wrong, in a few words."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http URL built above
            response.read()
    except urllib.error.HTTPError as exc:
        return f"{exc.code} {_reason(exc.read())}"
    except TimeoutError:
        return f"no answer within {timeout:g} s (event loop blocked?)"
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            return f"no answer within {timeout:g} s (event loop blocked?)"
        return f"unreachable ({exc.reason}); is the worker running with this metrics_port?"
    except OSError as exc:
        return f"unreachable ({exc})"
    return None


def _reason(body: bytes) -> str:
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:200].decode(errors="replace")
    if isinstance(answer, dict) and "reason" in answer:
        return str(answer["reason"])
    return str(answer)[:200]


def _probe_redis_only(settings: WorkerSettings, timeout: float) -> HealthVerdict:
    note = "metrics_port is 0 so the worker serves no health endpoints; checked Redis only"
    client = sync_client(settings.redis_url, retries=0, socket_timeout=timeout)
    try:
        client.ping()
    except redis.RedisError as exc:
        return HealthVerdict(False, f"Redis at {settings.redacted_redis_url}: {exc} ({note})")
    finally:
        client.close()
    return HealthVerdict(True, f"Redis at {settings.redacted_redis_url} answers ({note})")
