"""Reading a job's record (`coroq:{Q}:job:<id>`) into plain Python values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

_NUMBER_FIELDS = {
    "attempts": int,
    "max_attempts": int,
    "forgiven": int,
    "group": int,
    "group_index": int,
    "after_left": int,
}
_TIME_FIELDS = {"started_at", "finished_at", "enqueued_at", "next_attempt_at", "progress_at"}
_FRACTION_FIELDS = {"progress", "unique_ttl"}  # numbers that may have a fraction
# Bookkeeping of the worker's scripts, not part of what a record tells its reader.
# (`watched`: a producer waits on the job, docs/protocol.md#completion.)
# (`group_counted`: the member was counted in its group, docs/futures.md#groups.)
# (`held`, `held_to`, `dependents`: a job held for others, docs/futures.md#dependencies.)
_INTERNAL_FIELDS = {"start_token", "watched", "group_counted", "held", "held_to", "dependents"}
_JSON_FIELDS = {"result", "after"}


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def decode_record(raw: Mapping[Any, Any]) -> dict[str, Any]:
    """Decode a job record hash: numbers as numbers, the result as JSON."""
    record: dict[str, Any] = {}
    for key, value in raw.items():
        name = _text(key)
        if name in _INTERNAL_FIELDS:
            continue
        text = _text(value)
        if name in _NUMBER_FIELDS:
            record[name] = int(text)
        elif name in _TIME_FIELDS or name in _FRACTION_FIELDS:
            record[name] = float(text)
        elif name in _JSON_FIELDS:
            record[name] = orjson.loads(value)
        else:
            record[name] = text
    return record
