"""`worker health`: ask a running worker on this host whether it is live and ready.

It GETs `/healthz` then `/readyz` from the worker's HTTP endpoints (the same settings as the
worker), for Docker's HEALTHCHECK and for scripts. A worker whose port was left at its default
may serve on a later one (another worker had it): then the workers of this host are found in
their heartbeats, which say where each serves, and each is asked (`--pid` picks one). With
`metrics_port = 0` there are no endpoints, so it can only ping Redis, and says so.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from dataclasses import dataclass

import orjson
import redis

from producer.connection import sync_client
from producer.keys import QueueKeys, workers_key
from worker.settings import WorkerSettings

DEFAULT_TIMEOUT = 3.0
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}  # noqa: S104 - mapped away


@dataclass(frozen=True, slots=True)
class HealthVerdict:
    ok: bool
    message: str


def base_url(settings: WorkerSettings, port: int | None = None) -> str:
    """Where this host reaches the worker's endpoints (loopback when it listens everywhere)."""
    host = _ANY_ADDRESS.get(settings.metrics_host, settings.metrics_host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port or settings.metrics_port}"


def probe_health(
    settings: WorkerSettings, timeout: float = DEFAULT_TIMEOUT, pid: int | None = None
) -> HealthVerdict:
    if settings.metrics_port == 0:
        return _probe_redis_only(settings, timeout)
    ports = [settings.metrics_port]
    if "metrics_port" not in settings.model_fields_set or pid is not None:
        found = local_workers(settings, timeout)
        if pid is not None:
            found = {p: port for p, port in found.items() if p == pid}
            if not found:
                return HealthVerdict(False, f"no worker with pid {pid} on this host in Redis")
        ports = sorted(set(found.values())) or ports
    verdicts = [_probe_endpoints(base_url(settings, port), timeout) for port in ports]
    failed = [verdict for verdict in verdicts if not verdict.ok]
    if len(verdicts) == 1 or failed:
        return failed[0] if failed else verdicts[0]
    return HealthVerdict(True, f"{len(verdicts)} workers live and ready: " + "; ".join(
        verdict.message.rpartition(" at ")[2] for verdict in verdicts
    ))  # fmt: skip


def _probe_endpoints(url: str, timeout: float) -> HealthVerdict:
    for path in ("/healthz", "/readyz"):
        problem = _get_problem(url + path, timeout)
        if problem is not None:
            return HealthVerdict(False, f"{path} at {url}: {problem}")
    return HealthVerdict(True, f"live and ready: /healthz and /readyz answered 200 at {url}")


def local_workers(settings: WorkerSettings, timeout: float) -> dict[int, int]:
    """pid -> metrics port of each live worker of this host serving the first of the
    settings' queues, as its heartbeat says; empty when Redis cannot tell."""
    keys = QueueKeys(settings.queues[0], settings.prefix)
    client = sync_client(settings.redis_url, retries=0, socket_timeout=timeout)
    try:
        ids = client.smembers(workers_key(settings.prefix))
        beats = client.mget([keys.worker(_text(worker_id)) for worker_id in ids]) if ids else []
    except redis.RedisError:
        return {}
    finally:
        client.close()
    host = socket.gethostname()
    found: dict[int, int] = {}
    for beat in beats:
        try:
            data = orjson.loads(beat) if beat else None
        except orjson.JSONDecodeError:
            continue
        if isinstance(data, dict) and data.get("host") == host and data.get("metrics_port"):
            found[int(data["pid"])] = int(data["metrics_port"])
    return found


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


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
