"""Fixtures: a private redis-server for the session, fakeredis for logic, and a helper that
runs the real `worker` command as a subprocess.

Tests isolate themselves with a unique queue name each, never by flushing a server.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import orjson
import pytest
import redis

from producer.keys import QueueKeys
from tests.redis_versions import put_first_on_path, server_version
from worker.local_redis import RedisServerProcess

TESTS_DIR = Path(__file__).parent
REPO_ROOT = TESTS_DIR.parent
# The newest redis-server of this machine, or COROQ_TEST_REDIS_SERVER's (tests/redis_versions.py).
REDIS_SERVER_BINARY = put_first_on_path()


def pytest_report_header() -> str:
    if REDIS_SERVER_BINARY is None:
        return "redis-server: none found"
    version = ".".join(str(part) for part in server_version(REDIS_SERVER_BINARY))
    return f"redis-server: {version} ({REDIS_SERVER_BINARY})"


@pytest.hookimpl(trylast=True)  # after `-m` and `-k` have deselected what they deselect
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The run on the lowest releases (tests/lowest_versions.py), when its test is selected,
    starts now and goes on beside the other tests; its test, moved last, reads its outcome."""
    from tests.background_runs import INNER_RUN_ENV
    from tests.lowest_versions import LOWEST_VERSIONS_RUN, LowestVersionsRun

    if config.option.collectonly or os.environ.get(INNER_RUN_ENV):
        return
    _fault_suite_beside(config, items)
    lowest = [item for item in items if item.get_closest_marker("lowest_versions")]
    if not lowest:
        return
    items[:] = [item for item in items if item not in lowest] + lowest
    workdir = Path(tempfile.mkdtemp(prefix="coroq-lowest-"))
    run = config.stash[LOWEST_VERSIONS_RUN] = LowestVersionsRun(workdir).start()
    config.add_cleanup(lambda: shutil.rmtree(workdir, ignore_errors=True))
    config.add_cleanup(run.stop)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Say where the fault tests went: run beside the others, not skipped."""
    from tests.background_runs import FAULT_SUITE_RUN

    run = config.stash.get(FAULT_SUITE_RUN, None)
    if run is not None:
        _, output = run.outcome(timeout=0)
        last = output.strip().splitlines()[-1:] or ["(no output)"]
        terminalreporter.write_line(
            f"fault-injection suite, run beside the other tests (its tests show as deselected "
            f"above): {last[0]}"
        )


def _fault_suite_beside(config: pytest.Config, items: list[pytest.Item]) -> None:
    """When the session holds the fault-injection tests and the test that reads their run
    (tests/test_fault_suite.py), they run in a pytest of their own, started now, beside the
    rest; that test, moved last, gives their outcome (tests/background_runs.py)."""
    from tests.background_runs import FAULT_SUITE_RUN, BackgroundPytest, fault_suite_args

    reader = [item for item in items if item.get_closest_marker("fault_suite")]
    faults = [
        item for item in items
        if item.get_closest_marker("faults") and item not in reader
    ]  # fmt: skip
    if not reader or not faults:
        return
    config.hook.pytest_deselected(items=faults)
    items[:] = [item for item in items if item not in faults and item not in reader] + reader
    run = BackgroundPytest(fault_suite_args([item.nodeid for item in faults])).start()
    config.stash[FAULT_SUITE_RUN] = run
    config.add_cleanup(run.stop)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServerProcess]:
    """Our own redis-server on a free port; stopped at the end of the session."""
    with RedisServerProcess() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServerProcess) -> str:
    return redis_server.url


@pytest.fixture
def redis_client(redis_server: RedisServerProcess) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture
def fake_redis() -> Iterator[fakeredis.FakeRedis]:
    client = fakeredis.FakeRedis()
    yield client
    client.close()


@pytest.fixture
def queue_name() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def keys(queue_name: str) -> QueueKeys:
    return QueueKeys(queue_name)


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, interval: float = 0.02) -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s: {condition}")


class WorkerProcess:
    """The real `worker` command in a subprocess, with JSON logs captured to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log_file = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker", *args],
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )

    def logs(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log_path.read_bytes().splitlines():
            if line.strip():
                lines.append(orjson.loads(line))
        return lines

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.logs() if line.get("event") == name]

    def wait_started(self, timeout: float = 20.0) -> None:
        def started() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log_path.read_text()}")
            return bool(self.events("worker.started"))

        wait_for(started, timeout)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            self._log_file.close()

    def stop(self) -> None:
        """End the worker as an operator would: SIGTERM, a second one to cut the grace short,
        then SIGKILL if it still runs. A process that exits by itself writes its coverage data
        (a killed one loses all of it)."""
        for signum, grace in ((signal.SIGTERM, 1.0), (signal.SIGTERM, 5.0)):
            if self.process.poll() is not None:
                break
            self.process.send_signal(signum)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                continue
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log_file.close()


@pytest.fixture
def start_worker(
    redis_url: str, queue_name: str, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start `python -m worker` on the test's queue; extra CLI args and COROQ_* env allowed
    (a variable given as None is left out: the worker's default applies)."""
    started: list[WorkerProcess] = []

    def start(
        *args: str, env: dict[str, str | None] | None = None, wait: bool = True
    ) -> WorkerProcess:
        environment: dict[str, str | None] = {
            **os.environ,
            "COROQ_REDIS_URL": redis_url,
            "COROQ_QUEUES": queue_name,
            "COROQ_LOG_FORMAT": "json",
            "COROQ_TASKS": "tests.tasks",
            "COROQ_SHUTDOWN_GRACE": "10",
            "COROQ_METRICS_PORT": "0",  # tests that want the endpoints pick a free port
            "PYTHONPATH": str(REPO_ROOT),
            **(env or {}),
        }
        environment.pop("COROQ_CONFIG", None)
        given = {name: value for name, value in environment.items() if value is not None}
        worker = WorkerProcess(list(args), given, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        if wait:
            worker.wait_started()
        return worker

    yield start
    for worker in started:
        worker.stop()
