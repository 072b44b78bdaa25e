"""The HealthServer on a real port, on an event loop thread like the worker's, and the
`worker health` command (Docker's HEALTHCHECK) against it."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from producer.connection import async_client
from producer.keys import QueueKeys
from tests.conftest import WorkerProcess
from tests.deploy_tools import DOCKERFILE, clean_env, entry_point, run
from worker.local_redis import free_port
from worker.metrics import WorkerMetrics, refresh_queue_depths
from worker.process.http_endpoints import HealthServer
from worker.process.loop_thread import EventLoopThread


@dataclass
class Running:
    server: HealthServer
    metrics: WorkerMetrics
    loop_thread: EventLoopThread
    state: dict[str, object] = field(default_factory=lambda: {"live": True, "ready": True})

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"


@pytest.fixture
def running() -> Iterator[Running]:
    loop_thread = EventLoopThread(name="test-loop")
    loop_thread.start()
    metrics = WorkerMetrics(known_tasks=["echo"])
    state: dict[str, object] = {"live": True, "ready": True}

    def check(name: str):
        def run_check():
            value = state[name]
            if isinstance(value, Exception):
                raise value
            return value

        return run_check

    server = HealthServer("127.0.0.1", 0, metrics, check("live"), check("ready"))
    loop_thread.run(server.start(), timeout=10)
    yield Running(server, metrics, loop_thread, state)
    loop_thread.run(server.stop(), timeout=10)
    loop_thread.stop()


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - http://127.0.0.1
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def test_metrics_are_served_in_the_prometheus_text_format(running: Running) -> None:
    running.metrics.job_finished("default", "echo", "succeeded", 0.01)
    status, content_type, body = get(running.url("/metrics"))
    assert status == 200
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    (sample,) = families["coroq_jobs"].samples
    assert sample.labels == {"queue": "default", "task": "echo", "outcome": "succeeded"}
    assert sample.value == 1


def test_healthz_and_readyz_answer_200_then_503_with_the_reason(running: Running) -> None:
    for path in ("/healthz", "/readyz"):
        status, content_type, body = get(running.url(path))
        assert (status, content_type.split(";")[0]) == (200, "application/json")
        assert json.loads(body)["ok"] is True
    running.state["ready"] = (False, "redis unreachable")
    status, _, body = get(running.url("/readyz"))
    assert status == 503
    assert json.loads(body) == {"ok": False, "check": "ready", "reason": "redis unreachable"}
    running.state["live"] = RuntimeError("consumer thread gone")
    status, _, body = get(running.url("/healthz"))
    assert status == 503
    assert "consumer thread gone" in json.loads(body)["reason"]


def health(port: int, *args: str, **env: str) -> tuple[int, str]:
    environment = clean_env(
        COROQ_METRICS_PORT=str(port), COROQ_METRICS_HOST="0.0.0.0", COROQ_LOG_FORMAT="json", **env
    )
    result = run(*entry_point("worker"), "health", *args, env=environment)
    return result.returncode, (result.stdout + result.stderr).strip()


def health_with(env: dict[str, str], *args: str) -> tuple[int, str]:
    """`worker health` with these settings only (the metrics port left at its default)."""
    result = run(*entry_point("worker"), "health", *args, env=clean_env(**env))
    return result.returncode, (result.stdout + result.stderr).strip()


def test_worker_health_exits_0_when_live_and_ready(running: Running) -> None:
    code, output = health(running.server.port)
    assert code == 0, output
    assert output.startswith("ok: live and ready")


def test_the_dockerfile_healthcheck_command_works_outside_the_container(
    running: Running,
) -> None:
    command = re.search(r"HEALTHCHECK .*?CMD (\[.*?\])", DOCKERFILE.read_text(), re.DOTALL)
    assert command is not None
    args = json.loads(command.group(1))
    assert args[:2] == ["worker", "health"]
    code, output = health(running.server.port, *args[2:])
    assert code == 0, output


def test_worker_health_exits_1_naming_what_failed(running: Running) -> None:
    running.state["ready"] = (False, "redis unreachable")
    code, output = health(running.server.port)
    assert code == 1
    assert output.count("\n") == 0
    assert "/readyz" in output
    assert "redis unreachable" in output


def test_worker_health_reports_a_blocked_event_loop(running: Running) -> None:
    running.loop_thread.call_soon(time.sleep, 3)  # what a careless async task does
    code, output = health(running.server.port, "--timeout", "0.5")
    assert code == 1
    assert "no answer within 0.5 s" in output


def test_worker_health_without_a_worker_says_it_is_unreachable() -> None:
    code, output = health(free_port())
    assert code == 1
    assert "/healthz" in output
    assert "unreachable" in output


def test_with_metrics_port_0_worker_health_pings_redis_and_says_so(redis_url: str) -> None:
    code, output = health(0, COROQ_REDIS_URL=redis_url)
    assert code == 0, output
    assert "checked Redis only" in output
    code, output = health(0, COROQ_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert code == 1
    assert "checked Redis only" in output


def test_queue_depths_are_read_from_redis_into_the_metrics(
    redis_client: redis.Redis, redis_url: str, keys: QueueKeys
) -> None:
    redis_client.lpush(keys.ready, "a", "b", "c")
    redis_client.zadd(keys.delayed, {"d": 1})
    redis_client.lpush(keys.processing("w1"), "e", "f")
    redis_client.lpush(keys.processing("w2"), "g")
    redis_client.lpush(keys.dead, "h", "i", "j", "k")
    redis_client.zadd(keys.suspects, {"l": 1, "m": 2})
    metrics = WorkerMetrics(process_metrics=False)

    async def refresh() -> object:
        client = async_client(redis_url)
        try:
            return await refresh_queue_depths(client, [keys], metrics)
        finally:
            await client.aclose()

    depths = asyncio.run(refresh())
    assert depths[keys.queue].processing == 3  # type: ignore[index]
    text = metrics.render().decode()
    family = next(f for f in text_string_to_metric_families(text) if f.name == "coroq_queue_depth")
    found = {s.labels["state"]: s.value for s in family.samples if s.labels["queue"] == keys.queue}
    assert found == {"ready": 3, "delayed": 1, "processing": 3, "dead": 4, "suspects": 2}


def test_a_taken_port_gives_way_to_the_next_free_one_only_when_asked() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    loop_thread = EventLoopThread(name="test-loop")
    loop_thread.start()
    try:
        strict = HealthServer("127.0.0.1", port, WorkerMetrics(), lambda: True, lambda: True)
        with pytest.raises(OSError, match="in use"):
            loop_thread.run(strict.start(), timeout=10)
        lenient = HealthServer("127.0.0.1", port, WorkerMetrics(), lambda: True, lambda: True)
        loop_thread.run(lenient.start(next_free=20), timeout=10)
        assert port < lenient.port <= port + 20
        assert get(f"http://127.0.0.1:{lenient.port}/healthz")[0] == 200
        loop_thread.run(lenient.stop(), timeout=10)
    finally:
        taken.close()
        loop_thread.stop()


def test_workers_left_on_the_default_port_share_a_host_and_health_finds_each(
    redis_url: str,
    redis_client: redis.Redis,
    keys: QueueKeys,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """Two workers started by hand with the defaults: the second takes the next free port,
    each heartbeat says where it serves, and `worker health` asks both."""
    default = {"COROQ_METRICS_PORT": None}
    first, second = start_worker(env=default), start_worker(env=default)
    ports = {}
    for worker in (first, second):
        [started] = worker.events("worker.started")
        ports[worker.process.pid] = started["metrics_port"]
    assert len(set(ports.values())) == 2, ports
    for port in ports.values():
        assert get(f"http://127.0.0.1:{port}/metrics")[0] == 200
    stats = run(
        *entry_point("producer"), "stats", "--json", env=clean_env(COROQ_REDIS_URL=redis_url)
    )
    advertised = {
        worker["pid"]: worker["metrics_port"]
        for worker in json.loads(stats.stdout.splitlines()[-1])["workers"]
        if worker["pid"] in ports
    }
    assert advertised == ports
    environment = {"COROQ_REDIS_URL": redis_url, "COROQ_QUEUES": keys.queue}
    code, output = health_with(environment)
    assert code == 0, output
    assert output.startswith("ok: 2 workers live and ready"), output
    code, output = health_with(environment, "--pid", str(first.process.pid))
    assert code == 0, output
    assert str(ports[first.process.pid]) in output
    code, output = health_with(environment, "--pid", "1")
    assert code == 1
    assert "no worker with pid 1" in output


def test_a_blocked_event_loop_fails_healthz_and_metrics_still_answer(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The checks run on the worker's loop: one that does not answer is not live. The server's
    # own thread still answers, so the probe gets a reason rather than a timeout.
    monkeypatch.setattr("worker.process.http_endpoints.LOOP_ANSWER_TIMEOUT", 0.3)
    release = running.loop_thread.loop.call_soon_threadsafe
    blocked = threading.Event()
    release(lambda: blocked.wait(10))
    try:
        status, _, body = get(running.url("/healthz"))
        assert status == 503
        assert json.loads(body)["reason"] == "the event loop did not answer within 0.3 s"
        status, _, body = get(running.url("/metrics"))
        assert status == 200
        assert b"coroq_" in body
    finally:
        blocked.set()
    status, _, _ = get(running.url("/healthz"))
    assert status == 200


def test_an_unknown_path_is_404_and_head_answers_without_a_body(running: Running) -> None:
    status, _, _ = get(running.url("/nothing-here"))
    assert status == 404
    request = urllib.request.Request(running.url("/healthz"), method="HEAD")  # noqa: S310
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - 127.0.0.1
        assert response.status == 200
        assert response.read() == b""
