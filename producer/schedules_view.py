"""`producer schedules`: the periodic tasks the workers keep in Redis, with their next run.

Workers write each schedule into its queue's hash `coroq:{Q}:schedules` (worker/jobs/lua/
tick.lua): `<name>` the next tick still to push, `spec:<name>` how it ticks, `last:<name>`
what its last tick did. This reads them back.
"""

from __future__ import annotations

import math
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
    next_run: float | None  # None: the field holds no number (written by hand)
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
    """Every schedule of the queues named, or of every queue that has one. Values that are
    not what the workers write are shown as unknown (None, {}), never an error."""
    if queues:
        keys_list = [QueueKeys(queue, prefix) for queue in queues]
    else:
        pattern = f"{prefix}:{{*}}:schedules"
        found = sorted(
            key.decode() if isinstance(key, bytes) else str(key)
            for key in client.scan_iter(match=pattern, count=SCAN_COUNT)
        )
        keys_list = [QueueKeys(key[len(prefix) + 2 : key.index("}:")], prefix) for key in found]
    pipe = client.pipeline(transaction=False)
    for keys in keys_list:
        pipe.hgetall(keys.schedules)
    entries = []
    for keys, raw in zip(keys_list, pipe.execute(), strict=True):
        fields = {
            (k.decode("utf-8", "replace") if isinstance(k, bytes) else k): v for k, v in raw.items()
        }
        for name, value in sorted(fields.items()):
            if name.startswith(("spec:", "last:")):
                continue
            entries.append(
                ScheduleEntry(
                    keys.queue,
                    name,
                    _number(value),
                    _json_object(fields.get(f"spec:{name}")) or {},
                    _json_object(fields.get(f"last:{name}")),
                )
            )
    return entries


def _number(raw: bytes | str) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _json_object(raw: bytes | str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
