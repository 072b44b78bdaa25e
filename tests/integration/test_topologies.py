"""The deployments of tests/topologies.py, with real processes: they start, do what they
promise (replication and failover, TLS, cluster slots), and leave nothing running."""

from __future__ import annotations

import asyncio
import shlex
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.cluster
from aiohttp.test_utils import TestClient, TestServer
from redis.connection import SSLConnection, parse_url

from producer import Producer
from producer.connection import async_client, sync_client
from producer.dashboard import DashboardSettings, create_app
from producer.dashboard.overview import OverviewReader
from producer.keys import QueueKeys
from tests.conftest import wait_for
from tests.topologies import (
    CLUSTER_SLOTS,
    HOST,
    RedisCluster,
    SentinelSet,
    TlsRedis,
    TlsUnsupported,
    no_retry,
    slot_of,
)
from worker.jobs.protocol import QueueProtocol
from worker.jobs.queues import pipelined_worker_scripts
from worker.local_redis import find_redis_server

PASSWORD = "topologies-test-password"


def nothing_listens(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex((HOST, port)) != 0


def node(address: tuple[str, int], password: str | None = None) -> redis.Redis:
    host, port = address
    return redis.Redis(host=host, port=port, password=password, socket_timeout=5, retry=no_retry())


@pytest.mark.slow
def test_sentinel_set_replicates_and_fails_over_on_request() -> None:
    with SentinelSet() as sentinels:
        assert sentinels.service == "coroq"
        ports = ",".join(f"127.0.0.1:{port}" for _, port in sentinels.sentinel_addresses)
        assert sentinels.url == f"redis+sentinel://{ports}/coroq"
        sentinels.wait_ready(timeout=20)
        old = sentinels.primary_address()
        assert old == (HOST, sentinels.primary_port)
        replica = (HOST, sentinels.replica_port)

        with node(old) as primary, node(replica) as replica_client:
            primary.set("written-to-primary", "1")
            wait_for(lambda: replica_client.get("written-to-primary") == b"1", timeout=10)

        new = sentinels.failover(timeout=20)
        assert new == replica
        assert sentinels.primary_address() == new
        with node(new) as promoted:
            assert promoted.set("written-after-failover", "1")
            assert promoted.get("written-to-primary") == b"1"
        all_ports = [sentinels.primary_port, sentinels.replica_port, *sentinels.sentinel_ports]
    assert all(nothing_listens(port) for port in all_ports)


@pytest.mark.slow
def test_sentinel_set_with_a_password_elects_a_new_primary_when_the_primary_is_killed() -> None:
    with SentinelSet("orders", password=PASSWORD) as sentinels:
        assert sentinels.url.endswith("/orders")
        sentinels.wait_ready(timeout=20)
        with (
            node(sentinels.primary_address()) as anonymous,
            pytest.raises(redis.AuthenticationError),
        ):
            anonymous.ping()

        old = sentinels.kill_primary()
        assert nothing_listens(old[1])
        new = sentinels.wait_for_new_primary(old, timeout=15)
        assert new != old
        with node(new, password=PASSWORD) as promoted:
            assert promoted.set("written-after-crash", "1")


def test_a_sentinel_set_that_fails_to_start_stops_what_it_started(tmp_path: Path) -> None:
    # A redis-server that runs as a data node but refuses to be a sentinel.
    binary = tmp_path / "redis-server"
    binary.write_text(
        "#!/bin/sh\n"
        'case "$*" in *--sentinel*) echo "sentinel mode refused by the test" >&2; exit 1;; esac\n'
        f'exec {shlex.quote(find_redis_server())} "$@"\n'
    )
    binary.chmod(0o755)
    sentinels = SentinelSet(binary=str(binary))
    with pytest.raises(RuntimeError, match="sentinel mode refused by the test"), sentinels:
        pytest.fail("the set started without its sentinels")
    assert nothing_listens(sentinels.primary_port)
    assert nothing_listens(sentinels.replica_port)


@pytest.fixture
def tls_redis() -> Iterator[TlsRedis]:
    try:
        with TlsRedis() as server:
            yield server
    except TlsUnsupported as exc:
        pytest.skip(str(exc))


def test_tls_server_answers_over_tls_with_the_ca_url(tls_redis: TlsRedis) -> None:
    url = tls_redis.url
    parsed = parse_url(url)
    assert parsed["connection_class"] is SSLConnection
    assert parsed["ssl_ca_certs"] == str(tls_redis.ca_path)
    with_cert = parse_url(tls_redis.url_with_client_cert)
    assert with_cert["ssl_certfile"] == str(tls_redis.client_cert_path)
    assert with_cert["ssl_keyfile"] == str(tls_redis.client_key_path)

    with redis.Redis.from_url(url, retry=no_retry()) as client:
        assert client.ping()
    # The TLS port speaks nothing else: a plain client gets no answer it can read.
    with (
        redis.Redis(host=HOST, port=tls_redis.port, socket_timeout=2, retry=no_retry()) as plain,
        pytest.raises(redis.ConnectionError),
    ):
        plain.ping()


def test_tls_server_that_requires_a_client_certificate_refuses_clients_without_one() -> None:
    try:
        server = TlsRedis(require_client_cert=True).start()
    except TlsUnsupported as exc:
        pytest.skip(str(exc))
    with server:
        with (
            redis.Redis.from_url(server.url, retry=no_retry()) as no_cert,
            pytest.raises(redis.ConnectionError),
        ):
            no_cert.ping()
        with redis.Redis.from_url(server.url_with_client_cert, retry=no_retry()) as with_cert:
            assert with_cert.ping()
        port = server.port
    assert nothing_listens(port)


@pytest.fixture
def cluster() -> Iterator[RedisCluster]:
    with RedisCluster() as deployment:
        yield deployment


def cluster_client(deployment: RedisCluster) -> redis.cluster.RedisCluster:
    host, port = deployment.startup_nodes[0]
    return redis.cluster.RedisCluster(host=host, port=port)


@pytest.mark.slow
def test_cluster_covers_every_slot_and_spreads_hash_tags_over_its_nodes(
    cluster: RedisCluster,
) -> None:
    ports = ",".join(f"127.0.0.1:{port}" for _, port in cluster.startup_nodes)
    assert cluster.url == f"redis+cluster://{ports}"
    served = [cluster.node_for_slot(slot) for slot in (0, 5000, 10000, CLUSTER_SLOTS - 1)]
    assert set(served) <= set(cluster.startup_nodes)
    with redis.Redis(host=HOST, port=cluster.startup_nodes[0][1]) as one_node:
        assert one_node.execute_command("CLUSTER INFO")["cluster_slots_ok"] == str(CLUSTER_SLOTS)

    # One key per node: hash tags whose slots fall on three different primaries.
    keys_by_node: dict[tuple[str, int], str] = {}
    for tag in (f"tag{number}" for number in range(100)):
        key = f"{{{tag}}}:job"
        keys_by_node.setdefault(cluster.node_for_slot(slot_of(key)), key)
    assert len(keys_by_node) == 3

    with cluster_client(cluster) as client:
        for key in keys_by_node.values():
            client.set(key, key)
        assert [client.get(key) for key in keys_by_node.values()] == [
            key.encode() for key in keys_by_node.values()
        ]
    for (_, port), key in keys_by_node.items():
        with redis.Redis(host=HOST, port=port) as owner:
            assert owner.exists(key)  # stored on the node that serves its slot


@pytest.mark.slow
def test_migrate_slot_moves_the_keys_and_the_client_follows(cluster: RedisCluster) -> None:
    slot = slot_of("{q}:a")
    assert slot_of("{q}:b") == slot
    owner = cluster.node_for_slot(slot)
    [target, *_] = [address for address in cluster.startup_nodes if address != owner]

    with cluster_client(cluster) as client:
        client.set("{q}:a", "1")
        client.set("{q}:b", "2")
        assert cluster.migrate_slot(slot, target[1]) == 2
        assert cluster.node_for_slot(slot) == target
        assert client.get("{q}:a") == b"1"  # after a MOVED from the old owner
        assert client.get("{q}:b") == b"2"
    with redis.Redis(host=HOST, port=target[1]) as new_owner:
        assert new_owner.execute_command("CLUSTER COUNTKEYSINSLOT", slot) == 2
    assert cluster.migrate_slot(slot, target[1]) == 0  # already there


@pytest.mark.slow
def test_cluster_with_replicas_makes_the_startup_nodes_its_primaries() -> None:
    with RedisCluster(replicas=1) as deployment:
        with redis.Redis(host=HOST, port=deployment.ports[0], decode_responses=True) as one_node:
            ranges = one_node.execute_command("CLUSTER SLOTS")
        primaries = {(host, port) for _, _, (host, port, *_), *_ in ranges}
        assert primaries == set(deployment.startup_nodes)
        assert all(len(replicas) == 1 for _, _, _, *replicas in ranges)
        with cluster_client(deployment) as client:
            assert client.set("{x}:replicated", "1")
        ports = deployment.ports
    assert len(ports) == 6
    assert all(nothing_listens(port) for port in ports)


def test_worker_scripts_go_to_the_nodes_of_their_slots_and_follow_a_moved_slot(
    cluster: RedisCluster,
) -> None:
    # The worker's event loop sends its script calls straight to each queue's node
    # (worker/jobs/cluster_routing.py); a slot that moved is followed through the Cluster client.
    queues: dict[tuple[str, int], str] = {}
    for tag in (f"routed{number}" for number in range(100)):
        queues.setdefault(cluster.node_for_slot(slot_of(f"{{{tag}}}")), tag)
    protocols = [QueueProtocol(QueueKeys(queue), "w1", 60) for queue in queues.values()]
    moved = protocols[0].keys.history
    slot = slot_of(moved)
    target = next(node for node in cluster.startup_nodes if node != cluster.node_for_slot(slot))

    async def add_one_each_twice_with_the_slot_moved_between() -> list[list[object]]:
        client = async_client(cluster.url)
        scripts = pipelined_worker_scripts(client, cluster.url)
        calls = [protocol.add_history({"7:ok": 1}, None) for protocol in protocols]
        try:
            first = await asyncio.gather(*(scripts.run(call) for call in calls))
            assert cluster.migrate_slot(slot, target[1]) == 1
            # The client's map still names the old node: MOVED, then the Cluster client.
            second = await asyncio.gather(*(scripts.run(call) for call in calls))
            return [first, second]
        finally:
            await scripts.aclose()
            await client.aclose()

    assert asyncio.run(add_one_each_twice_with_the_slot_moved_between()) == [[0, 0, 0]] * 2
    with cluster_client(cluster) as client:
        for protocol in protocols:
            assert client.hget(protocol.keys.history, "7:ok") == b"2"


def test_the_dashboard_reads_queues_on_every_shard(cluster: RedisCluster) -> None:
    queues: dict[tuple[str, int], str] = {}
    for tag in (f"shown{number}" for number in range(100)):
        queues.setdefault(cluster.node_for_slot(slot_of(f"{{{tag}}}")), tag)
    for queue in queues.values():
        with Producer(cluster.url, queue=queue) as producer:
            producer.push("echo", queue)
    client = sync_client(cluster.url)
    try:
        overview = OverviewReader(client, "coroq").read()
        assert {(row.queue, row.ready) for row in overview.queues} == {
            (queue, 1) for queue in queues.values()
        }

        async def pages() -> list[str]:
            settings = DashboardSettings(redis_url=cluster.url)
            async with TestClient(TestServer(create_app(settings, client))) as http:
                texts = []
                for queue in queues.values():
                    response = await http.get(f"/queues/{queue}")
                    assert response.status == 200
                    texts.append(await response.text())
                return texts

        for queue, text in zip(queues.values(), asyncio.run(pages()), strict=True):
            assert f"[&#34;{queue}&#34;]" in text or f'["{queue}"]' in text  # its job's arguments
    finally:
        client.close()
