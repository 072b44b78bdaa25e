"""What the dashboard's buttons do: the same steps as the `producer` CLI verbs."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import cast

import redis

from producer.cancelling import Cancelled
from producer.client import Producer
from producer.dashboard.browsing import DeadFilter, find_dead
from producer.dead_letters import CHUNK, DEFAULT_RECORD_TTL, DeadJob, parse_entry
from producer.keys import QueueKeys
from producer.scripts import PRODUCER_SCRIPTS, SyncScripts, revive_call

_Act = Callable[[QueueKeys, DeadJob], bool]  # `Actions._revive` or `Actions._remove`


class Actions:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._scripts = SyncScripts(client, PRODUCER_SCRIPTS)

    def pause(self, keys: QueueKeys) -> bool:
        return self._producer(keys).pause()

    def resume(self, keys: QueueKeys) -> bool:
        return self._producer(keys).resume()

    def cancel(self, keys: QueueKeys, job_id: str) -> Cancelled:
        return self._producer(keys).cancel(job_id)

    def retry(self, keys: QueueKeys, ids: Iterable[str]) -> list[str]:
        """Send these dead jobs back to the ready list (front), attempts reset."""
        return [
            job.id for job in find_dead(self._client, keys, set(ids)) if self._revive(keys, job)
        ]

    def delete(self, keys: QueueKeys, ids: Iterable[str]) -> list[str]:
        """Remove these dead jobs, entry and record, for good."""
        return [
            job.id for job in find_dead(self._client, keys, set(ids)) if self._remove(keys, job)
        ]

    def retry_matching(self, keys: QueueKeys, where: DeadFilter) -> int:
        return self._each_matching(keys, where, self._revive)

    def delete_matching(self, keys: QueueKeys, where: DeadFilter) -> int:
        return self._each_matching(keys, where, self._remove)

    def _each_matching(self, keys: QueueKeys, where: DeadFilter, act: _Act) -> int:
        """Apply `act` to every matching entry, a chunk at a time (the list shortens as it
        goes, so the next chunk starts where this one ended, less what was removed)."""
        done = index = 0
        while True:
            entries = cast("list[bytes]", self._client.lrange(keys.dead, index, index + CHUNK - 1))
            removed = 0
            for entry in entries:
                job = parse_entry(entry)
                if where.matches(job) and act(keys, job):
                    removed += 1
            done += removed
            if len(entries) < CHUNK:
                return done
            index += len(entries) - removed

    def _revive(self, keys: QueueKeys, job: DeadJob) -> bool:
        if not job.id:  # an entry that could not be read names no job to send back
            return False
        call = revive_call(keys, job.id, entry=job.entry, raw=job.raw, ttl=DEFAULT_RECORD_TTL)
        return bool(self._scripts.run(call))

    def _remove(self, keys: QueueKeys, job: DeadJob) -> bool:
        if not self._client.lrem(keys.dead, 1, job.entry):  # type: ignore[arg-type]  # bytes work
            return False  # retried or removed meanwhile
        record = keys.job(job.id)
        if job.id and self._client.hget(record, "status") == b"dead":
            self._client.delete(record)
        return True

    def _producer(self, keys: QueueKeys) -> Producer:
        return Producer(client=self._client, queue=keys.queue, prefix=self._prefix)
