"""A Redis client whose pipeline fails on one round trip, as a dropped link would."""

from __future__ import annotations

from typing import Any

import fakeredis
import redis


class FailingOnRound:
    """Wraps a client so that the pipeline of one round trip fails as a dropped link would."""

    def __init__(self, client: fakeredis.FakeRedis, failing_round: int) -> None:
        self._client = client
        self._failing_round = failing_round
        self._rounds = 0

    def pipeline(self, transaction: bool = True) -> Any:
        self._rounds += 1
        pipe = self._client.pipeline(transaction=transaction)
        if self._rounds == self._failing_round:

            def fail() -> None:
                raise redis.ConnectionError("Connection reset by peer")

            pipe.execute = fail
        return pipe
