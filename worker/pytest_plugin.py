"""coroq's pytest plugin (entry point `pytest11`): fixtures to test code that pushes jobs and
the tasks that run them, against a real Redis, without a daemon (docs/testing.md).

- `coroq_redis_url`: a private redis-server for the session, or `--coroq-redis-url`;
- `coroq_queue`: a fresh queue name per test, whose keys are deleted after it;
- `coroq_producer`, `coroq_async_producer`: a `Producer`, an `AsyncProducer` on that queue;
- `coroq_worker`: an `InProcessWorker` (worker.testing) on that queue, running the task
  modules of the ini option `coroq_tasks`: push, `drain()`, assert.

pytest loads this module in every run of every project that has coroq installed, so it
imports nothing of coroq (nor Redis) until a test asks for one of its fixtures.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pluggy import Result

    from producer import AsyncProducer, Producer
    from worker.testing import InProcessWorker

REDIS_URL_OPTION = "--coroq-redis-url"
TASKS_INI = "coroq_tasks"
FAILED_JOBS_SECTION = "coroq: jobs whose latest attempt failed"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("coroq", "coroq job queue")
    group.addoption(
        REDIS_URL_OPTION,
        dest="coroq_redis_url",
        default=None,
        metavar="URL",
        help="Redis for the coroq fixtures instead of a private redis-server; never flushed: "
        "each test deletes the keys of its own queue only",
    )
    parser.addini(
        TASKS_INI,
        type="linelist",
        default=[],
        help="task modules the coroq_worker fixture runs (beside coroq's built-in tasks)",
    )


@pytest.fixture(scope="session")
def coroq_redis_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The Redis URL of the coroq fixtures: `--coroq-redis-url`, or a redis-server started
    for this session (from PATH, or the `coroq[server]` wheel) and stopped at its end."""
    given: str | None = request.config.getoption("coroq_redis_url")
    if given:
        yield given
        return
    from worker.local_redis import RedisServerProcess  # noqa: PLC0415 - see the docstring

    with RedisServerProcess() as server:
        yield server.url


@pytest.fixture
def coroq_queue(coroq_redis_url: str) -> Iterator[str]:
    """A queue of this test alone; every key of it is deleted after the test."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    yield name
    from producer.connection import sync_client  # noqa: PLC0415 - see the docstring
    from producer.keys import QueueKeys  # noqa: PLC0415
    from worker.queue_state import delete_queue_keys  # noqa: PLC0415

    client = sync_client(coroq_redis_url)
    try:
        delete_queue_keys(client, QueueKeys(name))
    finally:
        client.close()


@pytest.fixture
def coroq_producer(coroq_redis_url: str, coroq_queue: str) -> Iterator[Producer]:
    """A `Producer` whose jobs go to the test's queue."""
    from producer import Producer  # noqa: PLC0415 - see the docstring

    with Producer(coroq_redis_url, queue=coroq_queue) as producer:
        yield producer


@pytest.fixture
async def coroq_async_producer(
    coroq_redis_url: str, coroq_queue: str
) -> AsyncIterator[AsyncProducer]:
    """An `AsyncProducer` whose jobs go to the test's queue. An async fixture: the test's
    async plugin runs it in the test's event loop (anyio's, or pytest-asyncio's)."""
    from producer import AsyncProducer  # noqa: PLC0415 - see the docstring

    async with AsyncProducer(coroq_redis_url, queue=coroq_queue) as producer:
        yield producer


@pytest.fixture
def coroq_worker(
    request: pytest.FixtureRequest, coroq_redis_url: str, coroq_queue: str
) -> Iterator[InProcessWorker]:
    """An in-process worker on the test's queue, running the modules of `coroq_tasks`;
    nothing runs until the test calls `drain()` (or `await adrain()`)."""
    from worker.testing import InProcessWorker  # noqa: PLC0415 - see the docstring

    tasks: list[str] = request.config.getini(TASKS_INI)
    with InProcessWorker(coroq_redis_url, coroq_queue, tasks=tasks) as worker:
        yield worker
        worker.delete_queue()  # its worker id too, which the queue's own cleanup cannot name


# An old-style wrapper: the plugin loads with whatever pytest a project has installed, and
# new-style ones (`wrapper=True`) need a recent pluggy.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Result[pytest.TestReport], None]:
    """Under a failed test, the error and traceback of each job whose latest attempt failed
    during its drains: a failing assertion on a record seldom shows them."""
    outcome = yield
    report = outcome.get_result()
    worker = getattr(item, "funcargs", {}).get("coroq_worker")
    if report.failed and worker is not None and worker.failed_jobs:
        report.sections.append((FAILED_JOBS_SECTION, describe_failed_jobs(worker.failed_jobs)))


def describe_failed_jobs(records: dict[str, dict[str, Any]]) -> str:
    parts = []
    for job_id, record in records.items():
        attempts = record.get("attempts", "?")
        head = (
            f"job {job_id} (task {record.get('task', '?')}): {record.get('status')} after "
            f"{attempts} attempt(s); {record.get('reason', '?')}: {record.get('error', '')}"
        )
        traceback = str(record.get("traceback") or "").rstrip()
        parts.append(f"{head}\n{traceback}" if traceback else head)
    return "\n\n".join(parts)
