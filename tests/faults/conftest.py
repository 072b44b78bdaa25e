"""Fixtures of the fault-injection suite: a ledger per test and a launcher of workers.

Every fault test is marked `faults` and `slow` here, so `-m faults` runs just this suite
and `-m "not faults"` skips it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from producer.keys import QueueKeys
from tests.faults.ledger import Ledger
from tests.faults.processes import WorkerLauncher, worker_env
from worker.local_redis import RedisServerProcess

FAULTS_DIR = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(FAULTS_DIR):
            item.add_marker(pytest.mark.faults)
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def ledger(redis_client: redis.Redis, keys: QueueKeys) -> Ledger:
    """Jobs of the test's queue on the session Redis, counted in that same Redis."""
    return Ledger(redis_client, keys, redis_client, f"faults:{keys.queue}")


@pytest.fixture
def make_launcher(
    redis_server: RedisServerProcess, queue_name: str, tmp_path: Path
) -> Iterator[Callable[..., WorkerLauncher]]:
    """Build a launcher of workers for the test's queue; the ledger Redis is the session one.

    `redis_url` points the workers somewhere else (a restarted server, a faulty proxy).
    """
    launchers: list[WorkerLauncher] = []

    def make(
        redis_url: str | None = None, env: dict[str, str] | None = None, name: str = "w"
    ) -> WorkerLauncher:
        environment = worker_env(redis_url or redis_server.url, queue_name, redis_server.url, env)
        launcher = WorkerLauncher(environment, tmp_path, f"{name}-{queue_name}")
        launchers.append(launcher)
        return launcher

    yield make
    for launcher in launchers:
        launcher.close()
