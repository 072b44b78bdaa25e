"""A Redis client whose round trip number N fails, as a dropped link would."""

from __future__ import annotations

from typing import Any

import fakeredis
import redis


def _dropped_link() -> None:
    raise redis.ConnectionError("Connection reset by peer")


class FailingOnRound:
    """Wraps a client so that one round trip fails as a dropped link would. A round trip is
    a pipeline's execution, or a push command sent on its own (a push of one batch)."""

    def __init__(self, client: fakeredis.FakeRedis, failing_round: int) -> None:
        self._client = client
        self._failing_round = failing_round
        self._rounds = 0
        self.pipelines = 0

    def pipeline(self, transaction: bool = True) -> Any:
        self.pipelines += 1
        pipe = self._client.pipeline(transaction=transaction)
        if self._next_round_fails():
            pipe.execute = _dropped_link
        return pipe

    def hgetall(self, key: str) -> Any:
        """A read (the queue's unique tasks, before a push): not a push's round trip."""
        return self._client.hgetall(key)

    def lpush(self, *args: Any) -> Any:
        return self._command("lpush", *args)

    def rpush(self, *args: Any) -> Any:
        return self._command("rpush", *args)

    def zadd(self, *args: Any) -> Any:
        return self._command("zadd", *args)

    def _command(self, name: str, *args: Any) -> Any:
        if self._next_round_fails():
            _dropped_link()
        return getattr(self._client, name)(*args)

    def _next_round_fails(self) -> bool:
        self._rounds += 1
        return self._rounds == self._failing_round
