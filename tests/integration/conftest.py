"""Fixtures for tests that run the real worker process against the real redis-server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from producer import Producer
from producer.keys import QueueKeys


@pytest.fixture
def producer(redis_url: str, keys: QueueKeys) -> Iterator[Producer]:
    """The Python producer API, bound to the test's own queue."""
    with Producer(redis_url, queue=keys.queue) as client:
        yield client
