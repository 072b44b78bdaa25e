"""Tasks declared `@task(unique=True)` (docs/scheduling.md#unique-jobs), as producers see them.

A worker publishes the unique tasks it runs in each queue's hash `coroq:{Q}:unique_tasks`
(task -> {"ttl": seconds, "params": the names of its arguments}). A producer reads that hash
at its first push to the queue and again at most every `REFRESH` seconds, and gives each job
of such a task, pushed without a key of its own, the key derived from its task and arguments:
`<task>:<sha1 of the arguments>`. The arguments are taken by name, positional ones named after
the task's parameters, so `push("t", 1, 2)` and `push("t", a=1, b=2)` are the same job.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from producer.envelope import JobEnvelope

# How long a producer trusts what it read of a queue's unique tasks (seconds).
REFRESH = 10.0


@dataclass(frozen=True, slots=True)
class UniqueTask:
    """How a worker declared a unique task: the TTL its key keeps after the job ends, and
    the names of its parameters in order (None when positional arguments cannot be named)."""

    ttl: float
    params: tuple[str, ...] | None

    def key_of(self, envelope: JobEnvelope) -> str:
        """The unique key of a job of this task: its task and its arguments, by name."""
        args: Any = envelope.args
        if isinstance(args, list) and self.params is not None and len(args) <= len(self.params):
            args = dict(zip(self.params, args, strict=False))
        canonical = orjson.dumps(args, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
        digest = hashlib.sha1(canonical, usedforsecurity=False).hexdigest()
        return f"{envelope.task}:{digest}"

    def to_json(self) -> bytes:
        return orjson.dumps({"ttl": self.ttl, "params": self.params})


def read_unique_task(raw: bytes | str) -> UniqueTask | None:
    """A catalog entry, or None when it cannot be read (ignored, not fatal to a push)."""
    try:
        data = orjson.loads(raw)
        ttl = float(data.get("ttl") or 0)
        params = data.get("params")
        names = tuple(str(name) for name in params) if isinstance(params, list) else None
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        return None
    return UniqueTask(max(ttl, 0.0), names)


class UniqueTaskCatalogs:
    """What one producer has read of each queue's unique tasks, and when."""

    def __init__(self) -> None:
        self._by_queue: dict[str, tuple[float, dict[str, UniqueTask]]] = {}

    def due(self, queue_key: str) -> bool:
        """Whether the catalog of the queue (its hash's key) is to be read again."""
        seen = self._by_queue.get(queue_key)
        return seen is None or time.monotonic() - seen[0] >= REFRESH

    def store(self, queue_key: str, reply: Mapping[Any, Any]) -> dict[str, UniqueTask]:
        tasks: dict[str, UniqueTask] = {}
        for name, raw in reply.items():
            entry = read_unique_task(raw)
            if entry is not None:
                tasks[name.decode() if isinstance(name, bytes) else str(name)] = entry
        self._by_queue[queue_key] = (time.monotonic(), tasks)
        return tasks

    def get(self, queue_key: str) -> dict[str, UniqueTask]:
        return self._by_queue[queue_key][1]
