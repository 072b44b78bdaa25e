"""`producer schedules`: the periodic tasks the workers keep in Redis, with their next run.

Workers write each schedule into its queue's hash `coroq:{Q}:schedules` (worker/jobs/lua/
tick.lua): `<name>` the next tick still to push, `spec:<name>` how it ticks, `last:<name>`
what its last tick did. This reads them back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import redis

from producer.keys import QueueKeys

SCAN_COUNT = 1000


@dataclass(frozen=True, slots=True)
class ScheduleEntry:
    queue: str
    name: str
    next_run: float
    spec: dict[str, Any]
    last: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "name": self.name,
            "next_run": self.next_run,
            **self.spec,
            "last": self.last,
        }


def read_schedules(
    client: redis.Redis, prefix: str, queues: list[str] | None
) -> list[ScheduleEntry]:
    """Every schedule of the queues named, or of every queue that has one."""
    if queues:
        keys_list = [QueueKeys(queue, prefix) for queue in queues]
    else:
        pattern = f"{prefix}:{{*}}:schedules"
        found = sorted(
            key.decode() if isinstance(key, bytes) else str(key)
            for key in client.scan_iter(match=pattern, count=SCAN_COUNT)
        )
        keys_list = [QueueKeys(key[len(prefix) + 2 : key.index("}:")], prefix) for key in found]
    entries = []
    for keys in keys_list:
        fields = {
            (k.decode() if isinstance(k, bytes) else k): v
            for k, v in client.hgetall(keys.schedules).items()
        }
        for name, value in sorted(fields.items()):
            if name.startswith(("spec:", "last:")):
                continue
            spec = fields.get(f"spec:{name}")
            last = fields.get(f"last:{name}")
            entries.append(
                ScheduleEntry(
                    keys.queue,
                    name,
                    float(value),
                    orjson.loads(spec) if spec else {},
                    orjson.loads(last) if last else None,
                )
            )
    return entries
