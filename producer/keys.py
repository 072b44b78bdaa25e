"""Every Redis key name coroq uses, built in one place.

| key                              | type       | content                                       |
|----------------------------------|------------|-----------------------------------------------|
| `{prefix}:{Q}:ready`             | list       | jobs waiting; LPUSH to add, taken from right  |
| `{prefix}:{Q}:processing:<wid>`  | list       | jobs worker <wid> took and has not acked      |
| `{prefix}:{Q}:delayed`           | sorted set | jobs to run later, scored by due time (ms)    |
| `{prefix}:{Q}:dead`              | list       | jobs that failed for good, with the reason    |
| `{prefix}:{Q}:suspects`          | sorted set | jobs lost with a worker, to run in small groups |
| `{prefix}:{Q}:job:<id>`          | hash + TTL | status, attempts, result or error, timestamps |
| `{prefix}:{Q}:group:<gid>`       | hash + TTL | a group's size, members left, callback        |
| `{prefix}:{Q}:dependents:<id>`   | list + TTL | ids of the jobs held until job <id> succeeds  |
| `{prefix}:{Q}:settling`          | set        | ended jobs whose dependents await settling    |
| `{prefix}:{Q}:paused`            | string     | set while the queue is paused (when, epoch s) |
| `{prefix}:{Q}:schedules`         | hash       | periodic tasks: next tick, spec, last tick     |
| `{prefix}:{Q}:history`           | hash + TTL | jobs succeeded and failed per minute, 61 min  |
| `{prefix}:{Q}:unique:<key>`      | str + TTL  | id of the job holding the unique key          |
| `{prefix}:{Q}:worker:<wid>`      | str + TTL  | heartbeat of a worker serving queue Q         |
| `{prefix}:workers`               | set        | worker ids, for listing                       |

`{Q}` is the queue name inside a Redis Cluster hash tag, so all keys of one queue share a
slot and a Lua script over them stays valid on a cluster. Nothing else formats a key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from producer.errors import InvalidQueueName

DEFAULT_PREFIX = "coroq"
DEFAULT_QUEUE = "default"

# Braces would break the hash tag; whitespace and control characters make keys unreadable.
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")
_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def validate_queue_name(name: str) -> str:
    if not _QUEUE_NAME.fullmatch(name):
        raise InvalidQueueName(
            f"invalid queue name {name!r}: use 1-128 characters from A-Z a-z 0-9 _ . : @ -"
        )
    return name


def validate_prefix(prefix: str) -> str:
    if not _PREFIX.fullmatch(prefix):
        raise InvalidQueueName(
            f"invalid key prefix {prefix!r}: use 1-64 characters from A-Z a-z 0-9 _ . : -"
        )
    return prefix


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The key layout of one queue."""

    queue: str
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        validate_queue_name(self.queue)
        validate_prefix(self.prefix)

    @property
    def base(self) -> str:
        return f"{self.prefix}:{{{self.queue}}}"

    @property
    def ready(self) -> str:
        return f"{self.base}:ready"

    @property
    def delayed(self) -> str:
        return f"{self.base}:delayed"

    @property
    def dead(self) -> str:
        return f"{self.base}:dead"

    @property
    def suspects(self) -> str:
        """Jobs that were running on a worker that died, scored by the size of the largest
        group they may run in next (docs/reliability.md#blame)."""
        return f"{self.base}:suspects"

    @property
    def done_channel(self) -> str:
        """The pub/sub channel on which the id of each watched job is published when it ends
        (docs/protocol.md#completion)."""
        return f"{self.base}:done"

    @property
    def cancel_channel(self) -> str:
        """The pub/sub channel on which the id of a running job is published when a producer
        cancels it; its queue's workers listen (docs/futures.md#cancel)."""
        return f"{self.base}:cancel"

    @property
    def processing_pattern(self) -> str:
        """A SCAN pattern matching every worker's processing list of this queue."""
        return f"{self.base}:processing:*"

    @property
    def job_pattern(self) -> str:
        """A SCAN pattern matching every job record of this queue."""
        return f"{self.base}:job:*"

    @property
    def all_keys_pattern(self) -> str:
        """A SCAN pattern matching every key of this queue, and no key of another (queue
        names and prefixes hold no glob character)."""
        return f"{self.base}:*"

    def processing(self, worker_id: str) -> str:
        return f"{self.base}:processing:{worker_id}"

    def job(self, job_id: str) -> str:
        return f"{self.base}:job:{job_id}"

    def group(self, group_id: str) -> str:
        """A group of jobs with a callback (docs/futures.md#groups)."""
        return f"{self.base}:group:{group_id}"

    @property
    def schedules(self) -> str:
        """Per periodic task: its next tick, how it ticks, its last tick (docs/scheduling.md)."""
        return f"{self.base}:schedules"

    @property
    def history(self) -> str:
        """Jobs that succeeded and that ended dead, per minute, over the last hour
        (producer/history.py)."""
        return f"{self.base}:history"

    @property
    def paused(self) -> str:
        """Set while the queue is paused: workers take nothing from it (docs/scheduling.md)."""
        return f"{self.base}:paused"

    @property
    def settling(self) -> str:
        """Ids of ended jobs whose dependents are still to be settled (lib/after.lua)."""
        return f"{self.base}:settling"

    @property
    def settle_channel(self) -> str:
        """The pub/sub channel on which the id of an ended job with dependents is published;
        its queue's workers listen, and settle them (docs/futures.md#dependencies)."""
        return f"{self.base}:settle"

    def unique(self, key: str) -> str:
        """The id of the job holding this unique key (docs/scheduling.md#unique-jobs)."""
        return f"{self.base}:unique:{key}"

    @property
    def unique_tasks(self) -> str:
        """The tasks its workers declared `unique=True`, each with its key's TTL and its
        parameters' names (producer/unique_tasks.py)."""
        return f"{self.base}:unique_tasks"

    def dependents(self, job_id: str) -> str:
        """The ids of the jobs held until this one succeeds (docs/futures.md#dependencies)."""
        return f"{self.base}:dependents:{job_id}"

    def worker(self, worker_id: str) -> str:
        return f"{self.base}:worker:{worker_id}"

    # Limits across workers (docs/scheduling.md#rate-limits-and-global-concurrency). A
    # limiter is a task's name, or `task=value` for a task limited per value of an argument.

    def rate(self, limiter: str) -> str:
        """When the limiter's next start may happen (epoch ms; expires once passed)."""
        return f"{self.base}:rate:{limiter}"

    def starts(self, limiter: str) -> str:
        """The limiter's latest starts (epoch ms), as many as its rate allows per period."""
        return f"{self.base}:starts:{limiter}"

    def permits(self, limiter: str) -> str:
        """The ids of the limiter's running jobs, each scored with its permit's lease end."""
        return f"{self.base}:permits:{limiter}"

    def blocked(self, limiter: str) -> str:
        """Jobs of the limiter waiting for one of its running jobs to end."""
        return f"{self.base}:blocked:{limiter}"

    @property
    def limited(self) -> str:
        """The limiters with blocked jobs, each with its global concurrency."""
        return f"{self.base}:limited"


def queue_keys_pattern(prefix: str = DEFAULT_PREFIX) -> str:
    """A SCAN pattern for the ready, delayed, dead, suspects, paused, processing and worker
    keys of every queue (and not the job records, which are by far the most numerous)."""
    return f"{validate_prefix(prefix)}:{{*}}:[dprsw]*"


_QUEUE_LEVEL_KEYS = ("ready", "delayed", "dead", "suspects", "paused")
_PER_WORKER_KEYS = ("processing:", "worker:")


def parse_queue_key(key: str, prefix: str = DEFAULT_PREFIX) -> tuple[str, str] | None:
    """(queue, rest) for a key of this layout, e.g. ("emails", "processing:w1"); None for job
    records and for anything else. Queue names hold no brace, so the first one ends the tag."""
    head = f"{prefix}:{{"
    if not key.startswith(head):
        return None
    queue, brace, rest = key[len(head) :].partition("}:")
    if not brace or not _QUEUE_NAME.fullmatch(queue):
        return None
    if rest in _QUEUE_LEVEL_KEYS:
        return queue, rest
    if any(rest.startswith(kind) and len(rest) > len(kind) for kind in _PER_WORKER_KEYS):
        return queue, rest
    return None


def done_channels_pattern(prefix: str = DEFAULT_PREFIX) -> str:
    """A PSUBSCRIBE pattern matching the `done_channel` of every queue."""
    return f"{validate_prefix(prefix)}:{{*}}:done"


def queue_of_done_channel(channel: str, prefix: str = DEFAULT_PREFIX) -> str | None:
    """The queue whose `done_channel` this is, or None."""
    head, tail = f"{prefix}:{{", "}:done"
    if not (channel.startswith(head) and channel.endswith(tail)):
        return None
    queue = channel[len(head) : -len(tail)]
    return queue if _QUEUE_NAME.fullmatch(queue) else None


def workers_key(prefix: str = DEFAULT_PREFIX) -> str:
    """The set of worker ids across all queues (never read by a Lua script)."""
    return f"{prefix}:workers"
