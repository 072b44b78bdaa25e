"""The worker's Redis protocol on one queue: take, pop, start, give back, adopt, reject, ack,
retry, dead-letter, requeue, recover, promote, and add to the throughput history.

`QueueProtocol` is bound once to the queue's keys, the worker id and the record TTL, and
turns each step into one script call on the keys of that queue (docs/protocol.md#how-a-worker-
takes-and-settles-a-job); this module also reads the scripts' replies. `worker.jobs.queues`
runs the calls on Redis clients. The scripts are in `worker/jobs/lua/`; every key one touches
is in its KEYS.
"""

from __future__ import annotations

import base64
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from producer.envelope import MAX_ID_LENGTH
from producer.history import HISTORY_TTL_S
from producer.keys import QueueKeys
from producer.scripts import FINAL_STATUS_LIBS, ScriptCall, ScriptLibrary

# What a script that gives a job its final status does besides: count a member in its group,
# tell a waiting producer, mark the jobs held for it to be settled (the producer's libraries).
_FINAL_STATUS_LIBS = tuple(f"producer:{lib}" for lib in FINAL_STATUS_LIBS)

WORKER_SCRIPTS = ScriptLibrary(
    "worker.jobs",
    (
        "take",
        "start",
        "ack",
        "retry",
        "dead",
        "requeue",
        "adopt",
        "recover",
        "promote",
        "progress",
        "tick",
        "renew",
        "unblock",
        "history",
    ),
    uses={
        "progress": ("producer:notify",),
        "take": ("promote",),
        "promote": ("promote",),
        "start": ("records", "cancel", "limits", *_FINAL_STATUS_LIBS),
        "requeue": ("records", "limits"),
        "ack": ("fence", "cancel", "limits", *_FINAL_STATUS_LIBS),
        "retry": ("fence", "cancel", "limits", *_FINAL_STATUS_LIBS),
        "dead": ("fence", "cancel", "limits", *_FINAL_STATUS_LIBS),
        "renew": ("limits",),
        "unblock": ("limits",),
    },
    job_batch_scripts=frozenset({"ack"}),
)

# Most due delayed jobs promoted to the ready list in one round trip.
PROMOTE_BATCH = 500
# Times a recovery reads a lost worker's list again when it changed under it (only a worker
# coming back with the same id changes it; then it is alive, and nothing is to be done).
RECOVER_TRIES = 3


@dataclass(frozen=True, slots=True)
class JobLimits:
    """The limits a job counts against (docs/scheduling.md#rate-limits-and-global-
    concurrency): its limiter (its task, or its task and the value of its `limit_key`), how
    many may start per period (the period in ms), and how many may run at once across
    workers."""

    limiter: str
    rate: tuple[int, float] | None
    concurrency: int | None


@dataclass(frozen=True, slots=True)
class JobLinks:
    """What ties a job to keys beyond its own record: its group (docs/futures.md#groups)
    and its unique key (docs/scheduling.md#unique-jobs), as its envelope names them; its
    task's limits, as its worker knows them. The scripts that give a job its final status
    count it in the group, let the unique key go, and hand its permit on."""

    group: str | None = None
    unique: str | None = None
    limits: JobLimits | None = None


NO_LINKS = JobLinks()


@dataclass(frozen=True, slots=True)
class JobStart:
    """One job of a start call: what its record shows while it runs."""

    job_id: str
    raw: bytes  # as held in the processing list
    task: str
    max_attempts: int
    enqueued_at: float | None
    links: JobLinks = NO_LINKS


@dataclass(frozen=True, slots=True)
class Failure:
    """Why an attempt failed, as the record and the dead list keep it."""

    reason: str
    error: str
    traceback: str


@dataclass(frozen=True, slots=True)
class Taken:
    """What a take found: the jobs moved into the processing list, oldest first, when the
    next delayed job falls due (epoch ms; -1 when none waits), and how many suspects wait
    (an ordinary take moves no job while any does)."""

    jobs: list[bytes]
    next_due_ms: int
    suspects: int
    paused: bool = False  # the queue is paused (docs/scheduling.md#pause): nothing was taken


# What ack, retry and dead return for a job a producer had asked to cancel while it ran: it
# was recorded `cancelled` instead (lib/cancel.lua).
CANCELLED_INSTEAD = 2


@dataclass(frozen=True, slots=True)
class Started:
    """What counting a job's start found: the attempt that starts now (0: no longer held by
    this worker, or cancelled; negative: not started, minus the attempts made, all it may make
    used up), and how many of its lost attempts were forgiven (-1: cancelled)."""

    attempt: int
    forgiven: int
    # For a job over its task's rate: when it may start (epoch ms); it waits delayed till then.
    due_ms: int = 0

    @property
    def cancelled(self) -> bool:
        return self.attempt == 0 and self.forgiven == -1

    @property
    def put_back(self) -> bool:
        """Not started: its queue is paused, and it is back in the ready list."""
        return self.attempt == 0 and self.forgiven == -2

    @property
    def over_limit(self) -> bool:
        """Not started: over its task's limits, it waits for a permit or for `due_ms`."""
        return self.attempt == 0 and self.forgiven == -3


@dataclass(frozen=True, slots=True)
class Recovered:
    """What recovering a worker's jobs did: `alive` when it was not gone (nothing done),
    `changed` when its list changed since it was read; else how many jobs went back to the
    ready list (never started there), to the suspects, and of those how many were blamed."""

    alive: bool = False
    changed: bool = False
    requeued: int = 0
    suspects: int = 0
    blamed: int = 0


def held_job_id(raw: bytes) -> str:
    """The id in a held job's envelope, to find its record; "-" (no record) when it has no
    usable one."""
    try:
        job_id = orjson.loads(raw).get("id")
    except (orjson.JSONDecodeError, AttributeError):
        return "-"
    return job_id if isinstance(job_id, str) and 0 < len(job_id) <= MAX_ID_LENGTH else "-"


def dead_entry(
    *,
    job_id: str,
    queue: str,
    task: str | None,
    reason: str,
    error: str,
    traceback: str,
    attempts: int,
    worker_id: str,
    raw: bytes,
) -> bytes:
    """The JSON kept in `coroq:{Q}:dead`: why the job died, and its exact original bytes."""
    entry: dict[str, Any] = {
        "id": job_id,
        "queue": queue,
        "task": task,
        "reason": reason,
        "error": error,
        "traceback": traceback,
        "attempts": attempts,
        "failed_at": time.time(),
        "worker": worker_id,
    }
    try:
        entry["raw"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        entry["raw_base64"] = base64.b64encode(raw).decode("ascii")
    return orjson.dumps(entry)


def start_token(prefix: str) -> str:
    """A token unique to one start call, beginning with its consumer's `prefix`."""
    return f"{prefix}{random.getrandbits(64):016x}"


class QueueProtocol:
    """The script calls of one worker on one queue."""

    def __init__(
        self, keys: QueueKeys, worker_id: str, result_ttl: int, permit_lease: float = 15.0
    ) -> None:
        self.keys = keys
        self.worker_id = worker_id
        self.processing = keys.processing(worker_id)
        self._ttl = result_ttl
        # How long a permit of a limited task lasts unless the heartbeat renews it (ms).
        self._lease_ms = int(permit_lease * 1000)

    def take(self, most: int, now_ms: int, *, trial: bool = False) -> ScriptCall:
        """Promote due delayed jobs, then move up to `most` jobs into the processing list:
        ready jobs, or with `trial` a group of suspects."""
        keys = self.keys
        return ScriptCall(
            "take",
            [keys.ready, self.processing, keys.delayed, keys.suspects, keys.paused],
            [now_ms, most, PROMOTE_BATCH, "trial" if trial else ""],
        )

    def start(self, starts: Sequence[JobStart], token: str, group: int | None) -> ScriptCall:
        """Count a new attempt of each job still held (`Started` pairs). `group`: how many
        jobs at most run on the worker meanwhile (a trial of suspects, or a worker that runs
        one job at a time), None for an ordinary batch. Sent again with the same token, it
        counts nothing twice."""
        args: list[str | bytes | int | float] = [
            self.worker_id, self._ttl, self.keys.queue, token, "" if group is None else group,
            self._lease_ms,
        ]  # fmt: skip
        keys = [
            self.processing, self.keys.settling, self.keys.paused, self.keys.ready,
            self.keys.delayed,
        ]  # fmt: skip
        for start in starts:
            enqueued = "" if start.enqueued_at is None else repr(float(start.enqueued_at))
            flag = self._job_keys(keys, start.job_id, start.links, rate=True)
            limits = start.links.limits
            rate = concurrency = ""
            if limits is not None:
                if limits.rate is not None:
                    rate = f"{limits.rate[0]}/{limits.rate[1]:.3f}"
                concurrency = "" if limits.concurrency is None else str(limits.concurrency)
            args.extend(
                (start.raw, start.task, start.max_attempts, enqueued, flag, rate, concurrency)
            )
        return ScriptCall("start", keys, args)

    def _job_keys(
        self, keys: list[str], job_id: str, links: JobLinks, *, rate: bool = False
    ) -> str:
        """Add a job's record, and the keys of its links, to `keys`; the flag that says which
        follow the record (producer/lua/lib/group.lua, `job_keys`, and lib/limits.lua,
        `limit_keys`). `rate`: its limiter's rate key too (only starts use it)."""
        keys.append(self.keys.job(job_id))
        flag = ""
        if links.group is not None:
            keys.extend((self.keys.group(links.group), self.keys.ready))
            flag += "g"
        if links.unique is not None:
            keys.append(self.keys.unique(links.unique))
            flag += "u"
        limits = links.limits
        if limits is not None:
            if rate and limits.rate is not None:
                keys.extend((self.keys.rate(limits.limiter), self.keys.starts(limits.limiter)))
                flag += "r"
            if limits.concurrency is not None:
                keys.extend(self._permit_keys(limits.limiter))
                flag += "c"
        return flag

    def _permit_keys(self, limiter: str) -> tuple[str, str, str, str]:
        keys = self.keys
        return keys.permits(limiter), keys.blocked(limiter), keys.ready, keys.limited

    def adopt(self, raw: bytes, stamped: bytes) -> ScriptCall:
        """Replace a job taken without an id by the same job with the id the worker gave it."""
        return ScriptCall("adopt", [self.processing], [raw, stamped])

    def requeue(
        self, job_id: str, raw: bytes, *, undo_start: bool, links: JobLinks = NO_LINKS
    ) -> ScriptCall:
        """Put a held job back at the consuming end of the ready list; with `undo_start`, its
        counted start is taken back (the attempt never finished), and the permit it may hold
        is handed on."""
        keys = [self.processing, self.keys.ready, self.keys.job(job_id)]
        limits = links.limits
        flag = ""
        if undo_start and limits is not None and limits.concurrency is not None:
            keys.extend(self._permit_keys(limits.limiter))
            flag = "c"
        return ScriptCall("requeue", keys, [raw, "undo" if undo_start else "keep", flag])

    def renew_permits(self, held: Sequence[tuple[str, str]]) -> ScriptCall:
        """Extend the permits of the running jobs `held` ((limiter, job id) pairs)."""
        return ScriptCall(
            "renew",
            [self.keys.permits(limiter) for limiter, _ in held],
            [self._lease_ms, *(job_id for _, job_id in held)],
        )

    def unblock(self, limiter: str) -> ScriptCall:
        """Move jobs blocked on `limiter` whose permits lapsed back to the ready list."""
        keys = self.keys
        return ScriptCall(
            "unblock",
            [keys.limited, keys.permits(limiter), keys.blocked(limiter), keys.ready],
            [limiter],
        )

    def ack(
        self,
        job_id: str,
        raw: bytes,
        result_json: bytes,
        attempt: int,
        links: JobLinks = NO_LINKS,
    ) -> ScriptCall:
        keys = [self.processing, self.keys.settling]
        flag = self._job_keys(keys, job_id, links)
        return ScriptCall(
            "ack", keys, [raw, result_json, repr(time.time()), self._ttl, str(attempt), flag]
        )

    def retry(
        self,
        job_id: str,
        raw: bytes,
        failure: Failure,
        attempt: int,
        due_ms: int,
        links: JobLinks = NO_LINKS,
    ) -> ScriptCall:
        keys = [self.processing, self.keys.delayed, self.keys.settling]
        flag = self._job_keys(keys, job_id, links)
        return ScriptCall(
            "retry",
            keys,
            [raw, due_ms, failure.reason, failure.error, failure.traceback, self._ttl,
             str(attempt), flag],
        )  # fmt: skip

    def dead(
        self,
        job_id: str,
        raw: bytes,
        failure: Failure,
        attempt: int | None,
        entry: bytes,
        links: JobLinks = NO_LINKS,
    ) -> ScriptCall:
        """Dead-letter a held job; `attempt` None for one that never started (bad input)."""
        keys = [self.processing, self.keys.dead, self.keys.settling]
        flag = self._job_keys(keys, job_id, links)
        return ScriptCall(
            "dead",
            keys,
            [raw, entry, failure.reason, failure.error, failure.traceback, repr(time.time()),
             self._ttl, "" if attempt is None else str(attempt), flag],
        )  # fmt: skip

    def dead_letter(
        self,
        job_id: str,
        raw: bytes,
        task: str | None,
        failure: Failure,
        attempt: int | None,
        links: JobLinks = NO_LINKS,
    ) -> ScriptCall:
        """`dead`, with the dead-list entry written for this worker and queue; `attempt` None
        for a job that never started (its entry says 0 attempts)."""
        entry = dead_entry(
            job_id=job_id, queue=self.keys.queue, task=task, reason=failure.reason,
            error=failure.error, traceback=failure.traceback, attempts=attempt or 0,
            worker_id=self.worker_id, raw=raw,
        )  # fmt: skip
        return self.dead(job_id, raw, failure, attempt, entry, links)

    def recover(self, owner: str, held: Sequence[bytes], *, own: bool = False) -> ScriptCall:
        """Empty the processing list of a worker that is gone (its heartbeat expired; `own`:
        this worker's leftovers from an earlier life), `held` being that list as read: jobs
        it never started back to the ready list, the others to the suspects."""
        keys = self.keys
        records = [keys.job(held_job_id(raw)) for raw in held]
        return ScriptCall(
            "recover",
            [keys.processing(owner), keys.worker(owner), keys.ready, keys.suspects, *records],
            [owner, len(held), "own" if own else ""],
        )

    def progress(
        self, job_id: str, attempt: int, fraction: float, note: str, at: float
    ) -> ScriptCall:
        return ScriptCall(
            "progress", [self.keys.job(job_id)], [repr(fraction), note, repr(at), str(attempt)]
        )

    def tick(
        self, name: str, spec: str, now: float, due: float, following: float, grace: float,
        catch_up: bool, raw: bytes, job_id: str,
    ) -> ScriptCall:  # fmt: skip
        """Push the job of a schedule's tick `due` if no worker has (worker/jobs/lua/tick.lua)."""
        return ScriptCall(
            "tick",
            [self.keys.schedules, self.keys.ready],
            [name, spec, repr(now), repr(due), repr(following), repr(grace),
             "1" if catch_up else "", raw, job_id],
        )  # fmt: skip

    def promote(self, now_ms: int) -> ScriptCall:
        return ScriptCall("promote", [self.keys.delayed, self.keys.ready], [now_ms, PROMOTE_BATCH])

    def add_history(self, counts: Mapping[str, int], oldest_kept: int | None) -> ScriptCall:
        """Add counts of ended jobs (history field -> count, producer/history.py) to the
        queue's throughput history; with `oldest_kept` (a unix minute), delete the fields of
        earlier minutes too."""
        args: list[str | bytes | int | float] = [
            "" if oldest_kept is None else oldest_kept, HISTORY_TTL_S,
        ]  # fmt: skip
        for field, count in counts.items():
            args.extend((field, count))
        return ScriptCall("history", [self.keys.history], args)


def started(reply: Sequence[Any]) -> list[Started]:
    """The `Started` of each job of a start call's reply (three numbers per job)."""
    numbers = [int(n) for n in reply]
    return [Started(numbers[i], numbers[i + 1], numbers[i + 2]) for i in range(0, len(numbers), 3)]


def recovered(reply: Sequence[Any]) -> Recovered:
    alive, requeued, suspects, blamed = (int(n) for n in reply)
    if alive:
        return Recovered(alive=True)
    if requeued < 0:
        return Recovered(changed=True)
    return Recovered(requeued=requeued, suspects=suspects, blamed=blamed)
