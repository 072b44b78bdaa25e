"""Unique jobs (DESIGN §7, docs/scheduling.md#unique-jobs), against the real worker: while a
job holds a key (queued, delayed, running, retrying), pushing another with that key pushes
nothing and gives the first job's id; the key is let go, or kept `_unique_ttl` seconds, when
the job ends."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import orjson
import pytest
import redis

from producer import InvalidJob, Producer
from producer.envelope import build_envelope
from producer.keys import QueueKeys
from tests.conftest import REPO_ROOT, WorkerProcess, wait_for
from tests.integration.helpers import run_module


def test_a_second_push_with_the_key_pushes_nothing(
    producer: Producer, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    first = producer.push("tests.add", 1, 1, _unique="invoice:42")
    assert producer.push("tests.add", 9, 9, _unique="invoice:42") == first
    assert producer.push("tests.add", 9, 9, _unique="invoice:42", _delay=5) == first
    assert redis_client.llen(keys.ready) == 1
    assert redis_client.zcard(keys.delayed) == 0
    assert producer.push("tests.add", 1, 1, _unique="invoice:43") != first  # another key
    job = producer.submit("tests.add", 5, 5, _unique="invoice:42")
    assert job.id == first  # the future of the job that holds the key


def test_the_key_is_held_while_running_and_retrying_and_let_go_at_the_end(
    producer: Producer,
    redis_client: redis.Redis,
    keys: QueueKeys,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    start_worker()
    running = producer.push("tests.nap", 0.8, "x", _unique="nap")
    wait_for(lambda: redis_client.hget(keys.job(running), "status") == b"running")
    assert producer.push("tests.nap", 0.1, _unique="nap") == running
    producer.wait([running], timeout=20)
    again = producer.push("tests.nap", 0.1, _unique="nap")
    assert again != running
    producer.wait([again], timeout=20)
    # A job tried again keeps the key between its attempts; dead, it lets it go.
    flaky = producer.push("tests.retry_after", 0.5, _unique="flaky", _max_attempts=2)
    wait_for(lambda: redis_client.hget(keys.job(flaky), "status") == b"retrying")
    assert producer.push("tests.add", 1, 1, _unique="flaky") == flaky
    assert producer.wait([flaky], timeout=20)[flaky]["status"] in ("succeeded", "dead")
    assert producer.push("tests.add", 1, 1, _unique="flaky") != flaky


def test_a_dead_or_cancelled_job_lets_its_key_go(
    producer: Producer, start_worker: Callable[..., WorkerProcess]
) -> None:
    queued = producer.push("tests.add", 1, 1, _unique="k1")
    assert producer.cancel(queued).outcome.value == "cancelled"
    assert producer.push("tests.add", 1, 1, _unique="k1") != queued
    start_worker()
    dead = producer.push("tests.boom", _unique="k2", _max_attempts=1)
    assert producer.wait([dead], timeout=20)[dead]["status"] == "dead"
    assert producer.push("tests.add", 1, 1, _unique="k2") != dead


def test_unique_ttl_keeps_the_key_after_the_end(
    producer: Producer,
    redis_client: redis.Redis,
    keys: QueueKeys,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    start_worker()
    first = producer.push("tests.add", 1, 1, _unique="daily", _unique_ttl=2)
    producer.wait([first], timeout=20)
    assert producer.push("tests.add", 1, 1, _unique="daily") == first  # kept
    assert 0 < redis_client.ttl(keys.unique("daily")) <= 2
    wait_for(lambda: not redis_client.exists(keys.unique("daily")), timeout=10)
    assert producer.push("tests.add", 1, 1, _unique="daily") != first


def test_producers_racing_push_one_job(
    redis_url: str, redis_client: redis.Redis, keys: QueueKeys
) -> None:
    code = (
        "import sys\n"
        "from producer import Producer\n"
        "with Producer(sys.argv[1], queue=sys.argv[2]) as p:\n"
        "    print(p.push('tests.add', 1, 1, _unique='race'))\n"
    )
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", code, redis_url, keys.queue],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
        )
        for _ in range(8)
    ]
    ids = {racer.communicate(timeout=60)[0].strip() for racer in racers}
    assert len(ids) == 1
    assert redis_client.llen(keys.ready) == 1


def test_the_cli_reports_duplicates(
    redis_url: str, redis_client: redis.Redis, keys: QueueKeys, tmp_path: object
) -> None:
    jobs = b"\n".join(
        orjson.dumps({"task": "tests.add", "args": [i, i], "unique": key})
        for i, key in enumerate(["a", "b", "a"])
    )
    pushed = run_module(
        "producer",
        "push",
        "-",
        "-q",
        keys.queue,
        env={"COROQ_REDIS_URL": redis_url},
        stdin=jobs,
    )
    assert pushed.returncode == 0, pushed.stderr
    ids = pushed.stdout.split()
    assert len(ids) == 3
    assert ids[2] == ids[0]
    assert "duplicate: job 2 (unique 'a') not pushed" in pushed.stderr
    assert "pushed 2 job(s)" in pushed.stderr
    assert redis_client.llen(keys.ready) == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"_unique": ""}, "unique"),
        ({"_unique": "k", "_after": ["x"]}, "_unique and _after"),
        ({"_unique": "k", "_unique_ttl": -1}, "_unique_ttl"),
    ],
)
def test_bad_unique_options_push_nothing(
    producer: Producer,
    redis_client: redis.Redis,
    keys: QueueKeys,
    options: dict[str, object],
    message: str,
) -> None:
    with pytest.raises(InvalidJob, match=message):
        producer.push("tests.add", 1, 1, **options)  # type: ignore[arg-type]
    assert redis_client.llen(keys.ready) == 0
    assert not redis_client.exists(keys.unique("k"))


def test_a_task_declared_unique_dedupes_by_its_arguments(
    redis_url: str,
    redis_client: redis.Redis,
    keys: QueueKeys,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """`@task(unique=True)`: the key is the task and its arguments, by name; producers learn
    the declaration from the queue's catalog, which the worker writes as it starts."""
    start_worker()
    wait_for(lambda: redis_client.hexists(keys.unique_tasks, "tests.unique_nap"))
    assert not redis_client.hexists(keys.unique_tasks, "tests.add")  # not unique
    with Producer(redis_url, queue=keys.queue) as producer:
        first = producer.push("tests.unique_nap", 0.5, "a")
        assert producer.push("tests.unique_nap", seconds=0.5, label="a") == first  # same call
        [again] = producer.push_many([build_envelope("tests.unique_nap", (0.5, "a"), {})])
        assert again == first
        other = producer.push("tests.unique_nap", 0.5, "b")
        assert other != first
        assert producer.push("tests.unique_nap", 0.5, "a", _unique="mine") != first  # own key
        producer.wait([first, other], timeout=20)
        assert producer.push("tests.unique_nap", 0.5, "a") != first  # ended: free again
        kept = producer.push("tests.unique_kept", "x")
        producer.wait([kept], timeout=20)
        assert producer.push("tests.unique_kept", "x") == kept  # its key outlives it 30 s
    listing = run_module(
        "producer", "push", "-q", keys.queue, "-", env={"COROQ_REDIS_URL": redis_url},
        stdin=b'{"task": "tests.unique_kept", "args": ["x"]}\n',
    )  # fmt: skip
    assert listing.stdout.strip() == kept
    assert "duplicate" in listing.stderr


def test_a_task_option_that_cannot_be_used_stops_the_worker() -> None:
    from worker import task
    from worker.errors import TaskRegistrationError

    for options in ({"unique_ttl": 5}, {"unique": True, "unique_ttl": -1}, {"unique": "yes"}):
        with pytest.raises(TaskRegistrationError, match="unique"):
            task("bad.unique", **options)  # type: ignore[arg-type]
