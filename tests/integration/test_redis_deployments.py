"""TLS and ACL users (DESIGN §8, docs/operations.md#any-redis-deployment), with real servers
started by the tests: a TLS server with a CA made by the test, and a server with the ACL user
the docs give. Sentinel failovers are in tests/faults/test_sentinel_failover.py."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from producer import Producer, call
from producer.keys import QueueKeys
from producer.redis_urls import parse_cluster_url, parse_sentinel_url
from tests.conftest import REPO_ROOT, WorkerProcess
from tests.integration.helpers import run_module
from tests.topologies import TlsRedis, TlsUnsupported
from worker.local_redis import RedisServerProcess

OPERATIONS = REPO_ROOT / "docs" / "operations.md"
PASSWORD = "s3cret-for-tests"


@pytest.fixture
def tls_server() -> Iterator[TlsRedis]:
    try:
        with TlsRedis() as server:
            yield server
    except TlsUnsupported as exc:
        pytest.skip(str(exc))


def test_the_worker_and_the_producer_speak_tls(
    tls_server: TlsRedis, keys: QueueKeys, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker(env={"COROQ_REDIS_URL": tls_server.url})
    with Producer(tls_server.url, queue=keys.queue) as producer:
        job = producer.submit("tests.add", 2, 3)
        assert job.result(timeout=20) == 5
    stats = run_module("producer", "stats", "--redis-url", tls_server.url, env={})
    assert stats.returncode == 0, stats.stderr


def test_a_server_that_wants_a_client_certificate_gets_one_from_the_url(
    keys: QueueKeys, start_worker: Callable[..., WorkerProcess]
) -> None:
    try:
        server = TlsRedis(require_client_cert=True).start()
    except TlsUnsupported as exc:
        pytest.skip(str(exc))
    try:
        with pytest.raises(redis.ConnectionError):
            redis.Redis.from_url(server.url, retry=None).ping()  # no certificate
        start_worker(env={"COROQ_REDIS_URL": server.url_with_client_cert})
        with Producer(server.url_with_client_cert, queue=keys.queue) as producer:
            assert producer.submit("tests.add", 1, 1).result(timeout=20) == 2
    finally:
        server.stop()


def documented_acl() -> list[str]:
    """The ACL SETUSER line of docs/operations.md#acl-user, its password replaced."""
    line = re.search(r"^ACL SETUSER (.+)$", OPERATIONS.read_text(), re.MULTILINE)
    assert line is not None, "docs/operations.md gives no ACL SETUSER line"
    return line.group(1).replace(">CHANGE-ME", f">{PASSWORD}").split()


@pytest.fixture
def acl_server() -> Iterator[RedisServerProcess]:
    with RedisServerProcess() as server:
        yield server


def user_url(server: RedisServerProcess, user: str = "coroq") -> str:
    return f"redis://{user}:{PASSWORD}@127.0.0.1:{server.port}/0"


def test_the_documented_acl_user_is_enough_for_the_worker_and_the_producer(
    acl_server: RedisServerProcess, keys: QueueKeys, start_worker: Callable[..., WorkerProcess]
) -> None:
    admin = redis.Redis.from_url(acl_server.url)
    admin.execute_command("ACL", "SETUSER", *documented_acl())
    url = user_url(acl_server)
    worker = start_worker("--concurrency", "4", env={"COROQ_REDIS_URL": url})
    with Producer(url, queue=keys.queue) as producer:
        first = producer.push("tests.add", 1, 2)
        ids = [
            first,
            producer.push("tests.add", 1, 2, _delay=0.2),
            producer.push("tests.add", 2, 2, _unique="one"),
            producer.push("tests.unique_nap", 0.05, "x"),
            producer.push("tests.per_tenant", "a", 0.05),
            producer.push("tests.two_at_a_time", 0.05),
            producer.push("tests.boom", _max_attempts=1),
            producer.push("tests.add", 5, 5, _after=[first]),
        ]
        assert producer.submit("tests.add", 3, 3).result(timeout=20) == 6
        group = producer.group([call("tests.add", 1, 1)], then=call("echo"))
        assert group.callback.result(timeout=20) is not None
        records = producer.wait(ids, timeout=30)
        assert {r["status"] for r in records.values()} == {"succeeded", "dead"}
        producer.pause()
        producer.resume()
    for verb in (["stats"], ["dead", "list", "--queue", keys.queue], ["schedules"]):
        done = run_module("producer", *verb, "--redis-url", url, env={})
        assert done.returncode == 0, (verb, done.stderr)
    check = run_module("worker", "check", env={"COROQ_REDIS_URL": url, "COROQ_QUEUES": keys.queue})
    assert check.returncode == 0, check.stdout + check.stderr
    errors = [line for line in worker.logs() if line.get("level") == "error"]
    assert [line["event"] for line in errors] == ["job.dead"]  # tests.boom's, nothing refused


def test_a_permission_missing_stops_the_worker_with_one_line_naming_it(
    acl_server: RedisServerProcess, keys: QueueKeys
) -> None:
    admin = redis.Redis.from_url(acl_server.url)
    admin.execute_command("ACL", "SETUSER", *[part for part in documented_acl() if part != "+time"])
    admin.lpush(keys.ready, '{"task": "echo", "id": "kept", "args": [1]}')
    started = run_module(
        "worker",
        env={"COROQ_REDIS_URL": user_url(acl_server), "COROQ_QUEUES": keys.queue,
             "COROQ_METRICS_PORT": "0", "COROQ_LOG_FORMAT": "json"},
    )  # fmt: skip
    assert started.returncode == 2, started.stdout + started.stderr
    kept = b'{"task": "echo", "id": "kept", "args": [1]}'
    if admin.info("server")["redis_version"] >= "7":  # asked at the start: nothing taken
        assert started.stderr.strip().splitlines() == [
            "worker: error: the Redis user may not run TIME on coroq's keys and channels; "
            "grant them (docs/operations.md#acl-user)"
        ]
        assert admin.lrange(keys.ready, 0, -1) == [kept]
        return
    # Redis 6.2 cannot be asked: the first refusal stops the worker, with one error line.
    output = (started.stdout + started.stderr).splitlines()
    errors = [line for line in output if '"level":"error"' in line]
    assert len(errors) == 1, output
    assert "redis.permission_denied" in errors[0]
    held = [admin.lrange(key, 0, -1) for key in admin.scan_iter(f"{keys.base}:processing:*")]
    assert [kept] in [*held, admin.lrange(keys.ready, 0, -1)]  # not started, still there
    assert not admin.exists(keys.job("kept"))


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+sentinel:///mymaster", "at least one sentinel"),
        ("redis+sentinel://h:26379", "ends with /service"),
        ("redis+sentinel://h:99999/s", "not a node address"),
        ("redis+sentinel://h:1/s/zero", "is a number"),
        ("redis+sentinel://h:1/s?colour=red", "unknown Sentinel URL parameter"),
        ("redis+cluster://", "at least one node"),
        ("redis+cluster://h:1/3", "only database 0"),
        ("redis+cluster://h:1?x=1", "takes no parameters"),
    ],
)
def test_a_bad_deployment_url_is_named(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        (parse_cluster_url if "cluster" in url else parse_sentinel_url)(url)
    refused = run_module("worker", "check", env={"COROQ_REDIS_URL": url})
    assert refused.returncode == 2
    assert problem in refused.stderr


def test_a_sentinel_url_is_read_whole() -> None:
    found = parse_sentinel_url("redis+sentinel://u:p%40ss@a:1,b/svc/3?sentinel_password=x")
    assert found.sentinels == [("a", 1), ("b", 26379)]
    assert (found.service, found.db, found.username, found.password) == ("svc", 3, "u", "p@ss")
    assert found.sentinel_password == "x"
    assert "p@ss" not in repr(found)


def test_docs_name_the_deployment_urls() -> None:
    text = Path(OPERATIONS).read_text()
    for scheme in ("rediss://", "redis+sentinel://", "redis+cluster://", "unix://"):
        assert scheme in text
