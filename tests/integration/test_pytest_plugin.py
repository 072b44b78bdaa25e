"""The pytest plugin (worker/pytest_plugin.py) as a user's suite meets it: test files written
here run in a pytest subprocess (pytester) that loads the plugin by its entry point, with an
ini file naming their task modules, against a real redis-server."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest
import redis

from producer.keys import QueueKeys, workers_key
from tests.conftest import REPO_ROOT
from worker.local_redis import RedisServerProcess

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.real_redis

EXAMPLES = REPO_ROOT / "docs" / "examples"

TASKS = """
import asyncio

from worker import Retry, current_job, task


@task("plugin.add")
async def add(a: int, b: int) -> int:
    await asyncio.sleep(0.01)
    return a + b


@task("plugin.double")
def double(x: int) -> int:
    return 2 * x


@task("plugin.explode", max_attempts=2)
def explode(card: str) -> None:
    raise RuntimeError(f"card {card} declined")


@task("plugin.later")
async def later() -> int:
    if current_job().attempt == 1:
        raise Retry("not yet", after=3600)
    return current_job().attempt


@task("plugin.flaky", max_attempts=3)
async def flaky() -> int:
    if current_job().attempt < 3:
        raise ConnectionError("try again")
    return current_job().attempt


@task("plugin.hang")
async def hang() -> None:
    await asyncio.sleep(3600)


# Periodic, to a queue the tests' worker does not serve: the worker would refuse to start if
# it kept the schedule (and tick jobs of its own into the drains).
@task("plugin.report", every="1s", schedule_queue="reports")
async def report() -> None:
    pass
"""

INI = """
[pytest]
coroq_tasks =
    plugin_tasks
pythonpath = .
filterwarnings =
    error
"""


@pytest.fixture
def user_suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A project with coroq installed: its ini file and task module. The machine's COROQ_*
    variables are for daemons: one that no worker could start with must not matter."""
    monkeypatch.setenv("COROQ_CONCURRENCY", "not a number")
    pytester.makefile(".ini", pytest=INI)
    pytester.makepyfile(plugin_tasks=TASKS)
    return pytester


def run(suite: pytest.Pytester, *args: str) -> pytest.RunResult:
    return suite.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:cov", *args, timeout=90)


def test_a_sync_test_pushes_drains_and_reads_the_records_of_its_drain(
    user_suite: pytest.Pytester,
) -> None:
    user_suite.makepyfile(
        test_sync="""
        import threading
        import time

        def test_push_drain_assert(coroq_producer, coroq_worker, coroq_queue):
            assert coroq_producer.queue == coroq_worker.queue == coroq_queue
            first = coroq_producer.push("plugin.add", 2, 3)
            second = coroq_producer.push("plugin.double", 21)

            records = coroq_worker.drain()

            assert list(records) == [first, second]  # in the order they started
            assert records[first]["status"] == records[second]["status"] == "succeeded"
            assert (records[first]["result"], records[second]["result"]) == (5, 42)
            assert records[first] == coroq_producer.status(first)
            assert coroq_worker.drain() == {}  # the jobs of that drain only

        def test_nothing_runs_between_drains(coroq_producer, coroq_worker):
            job_id = coroq_producer.push("plugin.double", 1)
            coroq_worker.drain()
            # The worker's threads are gone (the idle threads of its pool for `def` tasks
            # end right after the drain).
            deadline = time.monotonic() + 5
            while any(t.name.startswith("coroq") for t in threading.enumerate()):
                assert time.monotonic() < deadline, threading.enumerate()
                time.sleep(0.01)
            again = coroq_producer.push("plugin.add", 2, 2)
            time.sleep(0.2)  # time enough for a worker, were one running, to take it
            assert coroq_producer.status(again) is None
            assert list(coroq_worker.drain()) == [again]
            assert coroq_producer.status(job_id)["result"] == 2
        """
    )
    run(user_suite).assert_outcomes(passed=2)


def test_an_async_test_awaits_adrain_while_its_event_loop_goes_on(
    user_suite: pytest.Pytester,
) -> None:
    user_suite.makepyfile(
        test_async="""
        import asyncio

        import pytest


        @pytest.fixture
        def anyio_backend():
            return "asyncio"


        @pytest.mark.anyio
        async def test_push_adrain_assert(coroq_async_producer, coroq_worker):
            job_id = await coroq_async_producer.push("plugin.add", 20, 22)
            ticks = 0

            async def tick():
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0.001)

            ticker = asyncio.create_task(tick())
            records = await coroq_worker.adrain()
            ticker.cancel()

            assert records[job_id]["result"] == 42
            assert ticks > 3  # the loop ran during the drain
            assert (await coroq_async_producer.status(job_id))["status"] == "succeeded"


        @pytest.mark.anyio
        async def test_one_drain_at_a_time(coroq_async_producer, coroq_worker):
            await coroq_async_producer.push("sleep", seconds=0.5)  # the first drain lasts
            outcomes = await asyncio.gather(
                coroq_worker.adrain(), coroq_worker.adrain(), return_exceptions=True
            )
            refused = [error for error in outcomes if isinstance(error, RuntimeError)]
            assert len(refused) == 1
            assert "draining already" in str(refused[0])
        """
    )
    run(user_suite).assert_outcomes(passed=2)


def test_a_failed_job_shows_its_error_and_traceback_under_the_failed_test(
    user_suite: pytest.Pytester,
) -> None:
    user_suite.makepyfile(
        test_failing="""
        def test_expects_success(coroq_producer, coroq_worker):
            job_id = coroq_producer.push("plugin.explode", "4242")
            records = coroq_worker.drain(delayed=True)
            assert records[job_id]["status"] == "succeeded"

        def test_expects_the_failure(coroq_producer, coroq_worker):
            job_id = coroq_producer.push("plugin.explode", "1111")
            record = coroq_worker.drain(delayed=True)[job_id]
            assert (record["status"], record["attempts"]) == ("dead", 2)
            assert "RuntimeError: card 1111 declined" in record["traceback"]
        """
    )
    result = run(user_suite, "-rP")  # -rP: what passing tests captured shows too
    result.assert_outcomes(passed=1, failed=1)
    output = result.stdout.str()
    assert output.count("coroq: jobs whose latest attempt failed") == 1  # the failed test's
    section = output[output.index("coroq: jobs whose latest attempt failed") :]
    assert re.search(
        r"job \w+ \(task plugin.explode\): dead after 2 attempt\(s\); "
        r"handler_error: RuntimeError: card 4242 declined",
        section,
    )
    assert re.search(r'plugin_tasks.py", line \d+, in explode', section)
    assert 'raise RuntimeError(f"card {card} declined")' in section


def test_delayed_jobs_wait_for_their_time_unless_the_drain_runs_them_now(
    user_suite: pytest.Pytester,
) -> None:
    user_suite.makepyfile(
        test_delayed="""
        from datetime import datetime, timedelta, timezone

        def test_a_job_pushed_for_later(coroq_producer, coroq_worker):
            later = coroq_producer.push("plugin.double", 1, _delay=3600)
            due = coroq_producer.push(
                "plugin.double", 2, _at=datetime.now(timezone.utc) - timedelta(seconds=1)
            )
            assert list(coroq_worker.drain()) == [due]
            assert coroq_producer.status(later) is None
            assert coroq_worker.drain(delayed=True)[later]["result"] == 2

        def test_a_retry_waits_its_delay(coroq_producer, coroq_worker):
            job_id = coroq_producer.push("plugin.later")
            assert coroq_worker.drain()[job_id]["status"] == "retrying"
            assert list(coroq_worker.failed_jobs) == [job_id]
            record = coroq_worker.drain(delayed=True)[job_id]
            assert (record["status"], record["result"]) == ("succeeded", 2)
            assert coroq_worker.failed_jobs == {}  # its latest attempt succeeded

        def test_every_retry_runs_now(coroq_producer, coroq_worker):
            job_id = coroq_producer.push("plugin.flaky")
            record = coroq_worker.drain(delayed=True)[job_id]
            assert (record["status"], record["attempts"]) == ("succeeded", 3)
            assert coroq_worker.failed_jobs == {}  # its last attempt succeeded
        """
    )
    run(user_suite).assert_outcomes(passed=3)


def test_each_test_has_a_queue_of_its_own(user_suite: pytest.Pytester) -> None:
    user_suite.makepyfile(
        test_queues="""
        from pathlib import Path

        def test_first(coroq_producer, coroq_queue):
            coroq_producer.push("plugin.add", 1, 2)  # left in its queue
            Path("queues.txt").write_text(coroq_queue + "\\n")

        def test_second(coroq_worker, coroq_queue):
            assert coroq_worker.drain() == {}
            with Path("queues.txt").open("a") as names:
                names.write(coroq_queue + "\\n")
        """
    )
    run(user_suite).assert_outcomes(passed=2)
    first, second = (user_suite.path / "queues.txt").read_text().split()
    assert first != second
    assert first.startswith("test-")
    assert second.startswith("test-")


def test_given_a_redis_url_the_tests_use_it_and_delete_only_their_own_keys(
    user_suite: pytest.Pytester, private_redis: RedisServerProcess
) -> None:
    client = redis.Redis.from_url(private_redis.url)
    others = QueueKeys("someone-elses")
    client.lpush(others.ready, b'{"task": "echo", "id": "theirs"}')
    client.hset(others.job("theirs"), "status", "queued")
    client.set("unrelated", "kept")
    user_suite.makepyfile(
        test_own_redis=f"""
        from pathlib import Path

        def test_on_the_given_server(coroq_redis_url, coroq_producer, coroq_worker, coroq_queue):
            assert coroq_redis_url == "{private_redis.url}"
            done = coroq_producer.push("plugin.add", 1, 2)
            coroq_producer.push("plugin.double", 3, _delay=3600)  # still delayed at the end
            coroq_producer.push("plugin.explode", "0000", _max_attempts=1)  # ends dead
            assert len(coroq_worker.drain()) == 2
            Path("queue.txt").write_text(coroq_queue)
        """
    )
    run(user_suite, "--coroq-redis-url", private_redis.url).assert_outcomes(passed=1)
    queue = (user_suite.path / "queue.txt").read_text()
    try:
        assert list(client.scan_iter(match=QueueKeys(queue).all_keys_pattern)) == []
        assert client.smembers(workers_key()) == set()
        assert client.lrange(others.ready, 0, -1) == [b'{"task": "echo", "id": "theirs"}']
        assert client.hgetall(others.job("theirs")) == {b"status": b"queued"}
        assert client.get("unrelated") == b"kept"
    finally:
        client.close()


def test_a_drain_that_runs_out_of_time_names_the_jobs_left(user_suite: pytest.Pytester) -> None:
    user_suite.makepyfile(
        test_timeout="""
        import time

        import pytest
        from worker.testing import DrainTimeout

        def test_gives_up(coroq_producer, coroq_worker):
            coroq_worker.configure(concurrency=1)
            stuck = coroq_producer.push("plugin.hang")
            behind = coroq_producer.push("plugin.add", 1, 1)
            started = time.monotonic()
            with pytest.raises(DrainTimeout) as raised:
                coroq_worker.drain(timeout=0.5)
            assert time.monotonic() - started < 5
            message = str(raised.value)
            assert message.startswith("drain() gave up after 0.5 s; jobs left in queue test-")
            assert f"running: {stuck} (task plugin.hang)" in message
            assert f"ready: {behind} (task plugin.add)" in message
            waiting = [(job.place, job.job_id) for job in raised.value.waiting]
            assert waiting == [("running", stuck), ("ready", behind)]
            # The stuck job went back to the queue: the next drain starts it again.
            with pytest.raises(DrainTimeout, match=f"running: {stuck} "):
                coroq_worker.drain(timeout=0.3)
        """
    )
    run(user_suite).assert_outcomes(passed=1)


def test_the_worker_takes_more_task_modules_and_settings(user_suite: pytest.Pytester) -> None:
    user_suite.makepyfile(
        more_tasks="""
        from worker import task

        @task("more.fail")
        async def fail() -> None:
            raise ValueError("no")
        """,
        test_more="""
        import pytest

        def test_added(coroq_producer, coroq_worker):
            coroq_worker.add_tasks("more_tasks")
            coroq_worker.configure(default_max_attempts=5, concurrency=2)
            coroq_worker.configure(default_max_attempts=1)  # the latest value holds
            assert coroq_worker.settings.concurrency == 2
            job_id = coroq_producer.push("more.fail")
            record = coroq_worker.drain()[job_id]
            assert (record["status"], record["attempts"]) == ("dead", 1)
            assert list(coroq_worker.failed_jobs) == [job_id]
            with pytest.raises(ValueError, match="queues: set by InProcessWorker"):
                coroq_worker.configure(queues=["elsewhere"])
        """,
    )
    run(user_suite).assert_outcomes(passed=1)


def test_the_docs_page_shows_the_example_files_in_full() -> None:
    page = (REPO_ROOT / "docs" / "testing.md").read_text()
    for name in ("test_example.py", "example_tasks.py"):
        assert f"```python\n{(EXAMPLES / name).read_text()}```" in page, name


def test_the_docs_example_passes(user_suite: pytest.Pytester) -> None:
    for name in ("test_example.py", "example_tasks.py"):
        (user_suite.path / name).write_text((EXAMPLES / name).read_text())
    user_suite.makefile(".ini", pytest=INI.replace("plugin_tasks", "example_tasks"))
    run(user_suite).assert_outcomes(passed=4)


def test_loading_the_plugin_imports_nothing_of_coroq_nor_redis() -> None:
    """pytest loads it in every run of every project that has coroq installed."""
    code = textwrap.dedent(
        """
        import sys
        import pytest
        before = set(sys.modules)
        import worker.pytest_plugin
        print("\\n".join(sorted(set(sys.modules) - before)))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    heavy = ("worker", "producer", "redis", "pydantic", "structlog", "orjson", "aiohttp")
    loaded = [name for name in result.stdout.split() if name.split(".")[0] in heavy]
    assert loaded == ["worker", "worker.pytest_plugin"]
