"""The event loop's script calls on a Redis Cluster, sent straight to the nodes of their slots.

redis-py's Cluster pipeline works out each command's slot and node, and packs each command on
its own: on a worker draining no-op jobs that cost a fifth of its CPU. Every call of the
worker's scripts names its queue's keys, all in one slot, so a round trip's calls are grouped
by the node that serves each queue's slot (from the Cluster client's map of slots) and sent
as plain pipelines, one per node, at once. A call a node refuses unrun (MOVED, ASK, TRYAGAIN,
CLUSTERDOWN: its slot moves) goes again, on its own, through the Cluster client, which follows
it and updates the map. A node that cannot be reached fails its calls, as one server would (their
callers decide), and gets a new connection next time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import redis
import redis.asyncio
import redis.asyncio.cluster

from producer.scripts import PipelinedScripts, ScriptCall, ScriptLibrary

Address = tuple[str, int]

# A node's refusals of a command it did not run: the slot is elsewhere, or moving.
NOT_RUN_HERE = (
    redis.exceptions.MovedError,
    redis.exceptions.AskError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
)
_NOT_RUN_HERE_CODES = frozenset({"MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN"})


def refused_unrun(reply: object) -> bool:
    """Whether a node's reply says it did not run the command: its slot is elsewhere or moving
    (older redis-py releases give these as plain ResponseErrors to a non-Cluster client)."""
    if isinstance(reply, NOT_RUN_HERE):
        return True
    if not isinstance(reply, redis.exceptions.ResponseError):
        return False
    return str(reply).split(" ", 1)[0] in _NOT_RUN_HERE_CODES


class NodeRoutedScripts(PipelinedScripts):
    def __init__(
        self,
        client: redis.asyncio.Redis,
        library: ScriptLibrary,
        node_client: Callable[[str, int], redis.asyncio.Redis],
    ) -> None:
        super().__init__(client, library)
        self._cluster = cast("redis.asyncio.cluster.RedisCluster", client)
        self._node_client = node_client
        self._nodes: dict[Address, redis.asyncio.Redis] = {}
        self._ready = False

    async def _replies(self, commands: list[ScriptCall]) -> list[Any]:
        if not self._ready:  # the map of slots comes with the client's first connection
            await self._cluster.initialize()
            self._ready = True
        by_node: dict[Address, list[int]] = {}
        routed_by_cluster: list[int] = []
        for index, command in enumerate(commands):
            if not command.keys:
                routed_by_cluster.append(index)
                continue
            try:
                node = self._cluster.get_node_from_key(command.keys[0])
            except redis.exceptions.SlotNotCoveredError:
                node = None
            if node is None:  # no node known for the slot (yet): the Cluster client finds it
                routed_by_cluster.append(index)
                continue
            by_node.setdefault((str(node.host), int(node.port)), []).append(index)
        replies: list[Any] = [None] * len(commands)
        await asyncio.gather(
            *(
                self._send_to_node(address, commands, indexes, replies)
                for address, indexes in by_node.items()
            )
        )
        routed_by_cluster += [index for index, reply in enumerate(replies) if refused_unrun(reply)]
        for index in routed_by_cluster:  # one by one: rare, and some releases allow no scripts
            replies[index] = await self._through_cluster(commands[index])  # in Cluster pipelines
        return replies

    async def _through_cluster(self, command: ScriptCall) -> Any:
        sha = self._library.shas[command.script]
        try:
            return await self._cluster.evalsha(sha, len(command.keys), *command.keys, *command.args)
        except redis.RedisError as exc:  # its caller decides, as for a pipeline's reply
            return exc

    async def _send_to_node(
        self, address: Address, commands: list[ScriptCall], indexes: list[int], replies: list[Any]
    ) -> None:
        client = self._nodes.get(address)
        if client is None:
            client = self._nodes[address] = self._node_client(*address)
        try:
            results = await self.pipeline_replies(client, [commands[i] for i in indexes])
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            del self._nodes[address]
            await client.aclose()
            results = [exc] * len(indexes)
        for index, result in zip(indexes, results, strict=True):
            replies[index] = result

    async def aclose(self) -> None:
        nodes, self._nodes = list(self._nodes.values()), {}
        for client in nodes:
            await client.aclose()
