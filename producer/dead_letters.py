"""The dead list of a queue: listing, reviving and purging jobs that failed for good."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import orjson
import redis

from producer.keys import QueueKeys
from producer.scripts import PRODUCER_SCRIPTS, SyncScripts, purge_call, revive_call

CHUNK = 1000
DEFAULT_RECORD_TTL = 7 * 24 * 3600
EVERYTHING = 1e18  # a cutoff later than any failed_at (Lua has no infinity literal)


@dataclass(frozen=True, slots=True)
class DeadJob:
    entry: bytes  # exactly as stored, to remove it atomically
    fields: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.fields.get("id", ""))

    @property
    def raw(self) -> bytes:
        """The job's original bytes (for an entry whose `raw_base64` is not base64, as written
        by hand, its text)."""
        if "raw_base64" in self.fields:
            encoded = self.fields["raw_base64"]
            try:
                return base64.b64decode(encoded)
            except (TypeError, ValueError):  # binascii.Error is a ValueError
                return str(encoded).encode("utf-8")
        return str(self.fields.get("raw", "")).encode("utf-8")


def parse_entry(entry: bytes) -> DeadJob:
    try:
        fields = orjson.loads(entry)
    except orjson.JSONDecodeError:
        fields = None
    if not isinstance(fields, dict):
        fields = {"id": "", "reason": "unreadable_entry", "raw": entry.decode("utf-8", "replace")}
    return DeadJob(entry, fields)


class DeadLetters:
    def __init__(self, client: redis.Redis, keys: QueueKeys) -> None:
        self._redis = client
        self._keys = keys
        self._scripts = SyncScripts(client, PRODUCER_SCRIPTS)

    def count(self) -> int:
        return self._redis.llen(self._keys.dead)

    def iter_entries(self, limit: int | None = None) -> Iterator[DeadJob]:
        """Entries newest first."""
        start = 0
        while limit is None or start < limit:
            end = start + CHUNK - 1 if limit is None else min(start + CHUNK, limit) - 1
            chunk = cast("list[bytes]", self._redis.lrange(self._keys.dead, start, end))
            yield from (parse_entry(entry) for entry in chunk)
            if len(chunk) < end - start + 1:
                return
            start = end + 1

    def retry(
        self, ids: Iterable[str] | None, *, record_ttl: int = DEFAULT_RECORD_TTL
    ) -> list[str]:
        """Send the dead jobs with these ids (all when None) back to the ready list."""
        wanted = None if ids is None else set(ids)
        revived: list[str] = []
        # Read first, then revive: reviving shortens the list being read.
        for job in list(self.iter_entries()):
            if wanted is not None and job.id not in wanted:
                continue
            call = revive_call(self._keys, job.id, entry=job.entry, raw=job.raw, ttl=record_ttl)
            if self._scripts.run(call):
                revived.append(job.id)
        return revived

    def purge(self, older_than: float | None = None, *, now: float) -> int:
        """Remove entries that failed more than `older_than` seconds ago (all when None)."""
        cutoff = EVERYTHING if older_than is None else now - older_than
        removed = 0
        while True:
            count = int(self._scripts.run(purge_call(self._keys, cutoff=cutoff, limit=CHUNK)))
            removed += count
            if count < CHUNK:
                return removed
