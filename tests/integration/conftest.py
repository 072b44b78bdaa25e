"""Fixtures for tests that run the real worker process against the real redis-server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from producer import Producer
from producer.keys import QueueKeys
from worker.local_redis import RedisServerProcess


@pytest.fixture
def producer(redis_url: str, keys: QueueKeys) -> Iterator[Producer]:
    """The Python producer API, bound to the test's own queue."""
    with Producer(redis_url, queue=keys.queue) as client:
        yield client


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServerProcess]:
    """A redis-server of this test alone: it may be stopped, and its command counts are the
    test's own."""
    (tmp_path / "redis").mkdir()
    server = RedisServerProcess(data_dir=tmp_path / "redis")
    server.start()
    yield server
    server.cleanup()
