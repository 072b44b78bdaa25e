"""The real worker process seen from outside: /metrics, /healthz and /readyz across a Redis
outage, and the sd_notify messages systemd would receive."""

from __future__ import annotations

import json
import os
import signal
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from producer import Producer
from producer.keys import QueueKeys
from tests.conftest import wait_for
from worker.local_redis import RedisServerProcess, free_port


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServerProcess]:
    """A redis-server this test may stop and start again (on the same port)."""
    server = RedisServerProcess(data_dir=tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    server.start()
    yield server
    server.cleanup()


def get(port: int, path: str) -> tuple[int, dict | str]:
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read().decode()
            status = response.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read().decode(), exc.code
    return status, json.loads(body) if path != "/metrics" else body


def samples(port: int) -> dict[tuple[str, frozenset], float]:
    """Every sample of the scraped /metrics, by name and labels."""
    _, text = get(port, "/metrics")
    assert isinstance(text, str)
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(port: int, name: str, **labels: str) -> float | None:
    return samples(port).get((name, frozenset(labels.items())))


@pytest.mark.slow
def test_metrics_and_health_of_a_running_worker_across_a_redis_outage(
    start_worker, own_redis: RedisServerProcess, keys: QueueKeys
) -> None:
    port = free_port()
    worker = start_worker(env={"COROQ_REDIS_URL": own_redis.url, "COROQ_METRICS_PORT": str(port)})
    queue = keys.queue
    with Producer(own_redis.url, queue=queue) as producer:
        for n in range(3):
            producer.push("tests.add", n, 1)
        producer.push("tests.boom", "for the metrics", _max_attempts=1)

    def counted() -> bool:
        succeeded = value(
            port, "coroq_jobs_total", queue=queue, task="tests.add", outcome="succeeded"
        )
        dead = value(port, "coroq_jobs_total", queue=queue, task="tests.boom", outcome="dead")
        return succeeded == 3 and dead == 1

    wait_for(counted)
    found = samples(port)
    histogram = (
        "coroq_job_duration_seconds_count",
        frozenset({("queue", queue), ("task", "tests.add")}),
    )
    assert found[histogram] == 3
    assert ("coroq_jobs_in_flight", frozenset()) in found
    assert ("coroq_event_loop_lag_seconds", frozenset()) in found
    # Queue depths are read every few seconds.
    wait_for(lambda: value(port, "coroq_queue_depth", queue=queue, state="dead") == 1)
    for state in ("ready", "delayed", "processing"):
        assert value(port, "coroq_queue_depth", queue=queue, state=state) == 0
    assert get(port, "/healthz") == (200, {"ok": True, "check": "live"})
    assert get(port, "/readyz") == (200, {"ok": True, "check": "ready"})
    reconnects_before = value(port, "coroq_redis_reconnects_total") or 0

    own_redis.stop()
    _, body = wait_for(lambda: (r := get(port, "/readyz"))[0] == 503 and r)
    assert isinstance(body, dict)
    assert "unreachable" in body["reason"]
    assert get(port, "/healthz")[0] == 200  # alive, only waiting for Redis
    assert worker.events("redis.unavailable")

    own_redis.start()
    wait_for(lambda: get(port, "/readyz")[0] == 200, timeout=30)
    assert (value(port, "coroq_redis_reconnects_total") or 0) > reconnects_before
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0


def test_the_worker_speaks_sd_notify_to_systemd(
    start_worker, tmp_path: Path, keys: QueueKeys
) -> None:
    """READY=1 once serving, WATCHDOG=1 pings from the event loop, STOPPING=1 on SIGTERM."""
    address = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(20)
    try:
        worker = start_worker(env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"}, wait=False)
        messages: list[str] = []

        def receive_until(wanted: str) -> None:
            while not any(wanted in message for message in messages):
                messages.append(listener.recv(4096).decode())

        receive_until("READY=1")
        ready = next(message for message in messages if "READY=1" in message)
        assert f"STATUS=serving {keys.queue}" in ready
        watchdog_before = sum("WATCHDOG=1" in message for message in messages)
        receive_until("WATCHDOG=1")
        for _ in range(3):
            messages.append(listener.recv(4096).decode())
        assert sum("WATCHDOG=1" in message for message in messages) >= watchdog_before + 3
        worker.signal(signal.SIGTERM)
        receive_until("STOPPING=1")
        assert worker.wait(timeout=30) == 0
    finally:
        listener.close()
        if os.path.exists(address):
            os.unlink(address)
