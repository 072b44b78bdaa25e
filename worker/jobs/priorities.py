"""Which queue's consumer takes a free slot when several want one (docs/scheduling.md#priorities).

A worker serving several queues runs one consumer thread per queue, all leasing slots from the
same `Slots`. With `queues = ["critical", "default", "bulk"]` they take in that order: while a
consumer wants slots (its queue had jobs at its last look), the consumers of the queues after
it take none. With weights (`["critical:6", "default:3", "bulk:1"]`) the slots are shared
instead: among the consumers that want slots, the one whose queue holds the fewest slots for
its weight goes first. A consumer whose queue is empty wants none (it waits in its blocking
pop, holding the one slot its next job will use), so the others go on.
A worker with one queue has no `QueueOrder`, and its path is untouched.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

# How often a consumer waiting for its turn looks again: with weights, jobs ending change
# turns without a word; in strict order only `want` does, and it wakes the waiters.
LOOK_AGAIN_WEIGHTED = 0.01
LOOK_AGAIN_STRICT = 0.25


class QueueOrder:
    def __init__(
        self,
        queues: list[str],
        weights: dict[str, int],
        slots_held: Callable[[str], int],
        capacity: int,
    ) -> None:
        self._rank = {queue: index for index, queue in enumerate(queues)}
        self._weights = weights
        self._capacity = capacity
        self._slots_held = slots_held
        self._wanting: set[str] = set()
        self._changed = threading.Condition()

    def want(self, queue: str, wanting: bool) -> None:
        """Say whether this queue's consumer wants slots (its queue has jobs waiting)."""
        with self._changed:
            if wanting == (queue in self._wanting):
                return
            if wanting:
                self._wanting.add(queue)
            else:
                self._wanting.discard(queue)
            self._changed.notify_all()

    def turn(self, queue: str) -> bool:
        """Whether this queue's consumer may take slots now."""
        with self._changed:
            return self._is_turn(queue)

    def allowance(self, queue: str, most: int) -> int:
        """How many more slots (up to `most`) this queue's consumer may take now: with
        weights, no more than its share of the worker's slots among the queues that want
        some; in strict order, all or none."""
        with self._changed:
            if not self._is_turn(queue):
                return 0
            if not self._weights:
                return most
            wanting = self._wanting | {queue}
            total = sum(self._weight(name) for name in wanting)
            share = self._capacity * self._weight(queue) // total
            return max(0, min(most, share - self._slots_held(queue)))

    def wait_turn(self, queue: str) -> bool:
        """Wait a little for this queue's turn; whether it came (look at `stop` between)."""
        timeout = LOOK_AGAIN_WEIGHTED if self._weights else LOOK_AGAIN_STRICT
        with self._changed:
            return self._changed.wait_for(lambda: self._is_turn(queue), timeout)

    def _is_turn(self, queue: str) -> bool:
        others = self._wanting - {queue}
        if not others:
            return True
        if not self._weights:
            return all(self._rank[other] > self._rank[queue] for other in others)
        mine = self._slots_held(queue) / self._weight(queue)
        return all(self._slots_held(other) / self._weight(other) >= mine for other in others)

    def _weight(self, queue: str) -> int:
        return self._weights.get(queue, 1)  # a queue given no weight beside weighted ones
