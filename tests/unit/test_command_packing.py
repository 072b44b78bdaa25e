"""Every asyncio client coroq makes packs commands with hiredis's C packer when hiredis is
installed (producer/connection.py): redis-py's asyncio connections pack in Python, which cost a
worker on a Cluster a tenth more CPU per job than one on a single server."""

from __future__ import annotations

import pytest
import redis.asyncio
from redis.utils import HIREDIS_AVAILABLE

from producer.connection import async_client, async_node_client

pytestmark = pytest.mark.skipif(not HIREDIS_AVAILABLE, reason="hiredis is not installed")

PACKED_IN_C = "HiredisRespSerializer"


def packer_of(client: redis.asyncio.Redis) -> str:
    connection = client.connection_pool.make_connection()
    return type(getattr(connection, "_serializer", None)).__name__


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:1/0", "rediss://127.0.0.1:1/0", "unix:///tmp/none.sock"]
)
def test_a_clients_connections_pack_in_c(url: str) -> None:
    assert packer_of(async_client(url)) == PACKED_IN_C
    assert packer_of(async_client(url, max_connections=4)) == PACKED_IN_C


@pytest.mark.parametrize("scheme", ["redis+cluster", "rediss+cluster"])
def test_a_cluster_nodes_client_packs_in_c(scheme: str) -> None:
    client = async_node_client(f"{scheme}://127.0.0.1:1", "127.0.0.1", 7001)
    assert packer_of(client) == PACKED_IN_C
