"""Pushing jobs in batches, shared by `Producer` and `AsyncProducer`.

Both build envelopes the same way (`producer.envelope`) and push in the same batches
(`plan_batches`: `LPUSH`/`RPUSH` to the ready list, or `ZADD` to the delayed set); only the
I/O differs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import redis
import redis.asyncio

from producer.dependencies import dependency_ids, hold_steps, released_to
from producer.envelope import JobEnvelope, build_envelope, stamp
from producer.errors import InvalidJob, InvalidSchedule, NotReplicated, PartialPush
from producer.keys import QueueKeys
from producer.schedule import Schedule, make_schedule
from producer.scripts import PRODUCER_SCRIPTS, ScriptCall
from producer.steps import Step
from producer.tracing import current_trace_context
from producer.unique_tasks import UniqueTask, UniqueTaskCatalogs

DEFAULT_BATCH_SIZE = 1000
# The longest a unique key is held by a job that never ends (lost without a trace): a job
# that ends lets it go at once (docs/scheduling.md#unique-jobs).
UNIQUE_HOLD_LIMIT = 30 * 24 * 3600

ProgressCallback = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class Batch:
    """One LPUSH/RPUSH (or, with a `due_ms`, one ZADD) of several jobs; `ids` in the order
    the jobs are pushed. A unique job (its envelope names a `unique` key) is a batch of its
    own, pushed by producer/lua/push_unique.lua only if no job holds its key."""

    key: str
    front: bool
    payloads: list[bytes]
    ids: list[str]
    due_ms: int | None = None  # delayed: the score of every job of the batch (epoch ms)
    unique: ScriptCall | None = None  # the script call that pushes a unique job

    def pushed_ids(self, reply: Any) -> list[str]:
        """The ids to report for this batch, given its command's reply: for a unique job,
        the id of the job holding the key (another job's for a duplicate)."""
        if self.unique is None:
            return self.ids
        return [reply.decode() if isinstance(reply, bytes) else str(reply)]


def plan_batches(
    envelopes: Iterable[JobEnvelope],
    keys: QueueKeys,
    *,
    front: bool = False,
    schedule: Schedule | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    unique_ttl: float | None = None,
    unique_tasks: Mapping[str, UniqueTask] | None = None,
    traced: bool = False,
) -> Iterator[Batch]:
    """Group jobs into pushes that keep their order.

    Workers take from the right. `LPUSH k a b c` leaves `c b a`, so `a` runs first: file order.
    `front` jobs go to the right with `RPUSH`, last job first (`RPUSH k c b`, `RPUSH k a`), so
    they too run in file order, ahead of everything already waiting; their ids come in the
    order they are pushed, which the callers turn back into file order.

    With a `schedule` the jobs go to the delayed set instead, scored by their due time, which
    is computed once per batch after its jobs are stamped: never earlier than the
    `enqueued_at` stamped here plus the delay. Jobs due at the same time start in no
    particular order.

    A job of a task its workers declared unique (`unique_tasks`), pushed without a key of its
    own and outside a group, gets the key derived from its arguments (producer.unique_tasks).

    Jobs without a trace context get the caller's, looked up once; `traced`: the envelopes were
    stamped with it already (`plan_push` builds its one envelope that way).
    """
    if front and schedule is not None:
        raise InvalidSchedule("a delayed push cannot go to the front")
    payloads: list[bytes] = []
    ids: list[str] = []
    # One look for the whole push: it cannot change meanwhile.
    trace = None if traced else current_trace_context()
    for envelope in reversed(list(envelopes)) if front else envelopes:
        stamp(envelope, trace)
        ttl = unique_ttl
        if unique_tasks and envelope.unique is None and envelope.group is None:
            declared = unique_tasks.get(envelope.task)
            if declared is not None:
                envelope.unique = declared.key_of(envelope)
                ttl = declared.ttl if unique_ttl is None else unique_ttl
        if envelope.unique is not None:
            if payloads:
                yield _batch(keys, front, schedule, payloads, ids)
                payloads, ids = [], []
            yield unique_batch(keys, envelope, front, schedule, ttl)
            continue
        payloads.append(envelope.to_json())
        ids.append(str(envelope.id))
        if len(payloads) >= batch_size:
            yield _batch(keys, front, schedule, payloads, ids)
            payloads, ids = [], []
    if payloads:
        yield _batch(keys, front, schedule, payloads, ids)


def unique_batch(
    keys: QueueKeys,
    envelope: JobEnvelope,
    front: bool,
    schedule: Schedule | None,
    unique_ttl: float | None,
) -> Batch:
    """The batch of one unique job (its envelope stamped)."""
    if unique_ttl is not None and not unique_ttl >= 0:
        raise InvalidJob(
            f"_unique_ttl must be seconds >= 0, not {unique_ttl!r}", field="_unique_ttl"
        )
    raw = envelope.to_json()
    job_id = str(envelope.id)
    placement = released_to(front, schedule)
    call = ScriptCall(
        "push_unique",
        [keys.unique(str(envelope.unique)), keys.ready, keys.delayed, keys.job(job_id)],
        [
            raw,
            placement,
            job_id,
            UNIQUE_HOLD_LIMIT,
            "" if unique_ttl is None else repr(unique_ttl),
            str(envelope.unique),
        ],
    )
    return Batch(keys.ready, front, [raw], [job_id], unique=call)


def _batch(
    keys: QueueKeys,
    front: bool,
    schedule: Schedule | None,
    payloads: list[bytes],
    ids: list[str],
) -> Batch:
    if schedule is None:
        return Batch(keys.ready, front, payloads, ids)
    return Batch(keys.delayed, False, payloads, ids, schedule.due_ms(time.time()))


AnyPipeline = redis.client.Pipeline | redis.asyncio.client.Pipeline


def send_batch(target: AnyPipeline | redis.Redis | redis.asyncio.Redis, batch: Batch) -> Any:
    """The batch's command: queued on a pipeline, or sent by a client (which gives back the
    reply, or with an asyncio client an awaitable of it)."""
    if batch.unique is not None:
        # EVAL with the script's text: within MULTI/EXEC a script the server does not know
        # could not be loaded and sent again.
        call = batch.unique
        source = PRODUCER_SCRIPTS.sources[call.script]
        return target.eval(source, len(call.keys), *call.keys, *call.args)
    if batch.due_ms is not None:
        # A sorted set holds a member once: byte-identical jobs (a file repeating a job with
        # its id and enqueued_at) are pushed once. Jobs stamped here always differ.
        return target.zadd(batch.key, dict.fromkeys(batch.payloads, batch.due_ms))
    if batch.front:
        return target.rpush(batch.key, *batch.payloads)
    return target.lpush(batch.key, *batch.payloads)


# Batches sent per pipeline round trip (one MULTI/EXEC).
DEFAULT_BATCHES_PER_ROUND = 10


def rounds(
    batches: Iterable[Batch], per_round: int = DEFAULT_BATCHES_PER_ROUND
) -> Iterator[list[Batch]]:
    group: list[Batch] = []
    for batch in batches:
        group.append(batch)
        if len(group) >= per_round:
            yield group
            group = []
    if group:
        yield group


def partial_push(
    pushed: list[str], failed: list[Batch], total: int, front: bool, error: Exception
) -> PartialPush:
    uncertain = [job_id for batch in failed for job_id in batch.ids]
    in_order = pushed[::-1] if front else pushed
    remaining = total - len(pushed) - len(uncertain)
    return PartialPush(in_order, uncertain, remaining, f"{type(error).__name__}: {error}")


# How long a durable push waits for a replica to confirm each batch, by default (seconds).
DEFAULT_DURABLE_TIMEOUT = 2.0


def wait_for_replica(pipe: AnyPipeline, timeout: float) -> None:
    """Queue `WAIT 1 <ms>` after a batch on the same connection: its reply is how many
    replicas have every write of that connection, this batch's included."""
    pipe.execute_command("WAIT", 1, max(1, int(timeout * 1000)))


def not_replicated(
    pushed: list[str], batch: Batch, total: int, front: bool, timeout: float
) -> NotReplicated:
    confirmed = pushed[::-1] if front else pushed
    remaining = total - len(pushed) - len(batch.ids)
    return NotReplicated(confirmed, list(batch.ids), remaining, timeout)


def schedule_of_push(
    delay: float | timedelta | None, at: datetime | None, front: bool
) -> Schedule | None:
    return make_schedule(delay, at, front=front, names=("_delay", "_at", "_front"))


@dataclass(frozen=True, slots=True)
class PushPlan:
    """One job of `push`/`submit`, checked: its envelope, its keys and schedule; and for a
    job that waits for others, the steps that hold it (producer/dependencies.py)."""

    envelope: JobEnvelope
    keys: QueueKeys
    schedule: Schedule | None
    hold: Generator[Step, Any, None] | None

    @property
    def job_id(self) -> str:
        return str(self.envelope.id)


def plan_push(
    task: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    keys: QueueKeys,
    *,
    job_id: str | None,
    max_attempts: int | None,
    timeout: float | None,
    front: bool,
    delay: float | timedelta | None,
    at: datetime | None,
    after: Any,
    unique: str | None,
    durable: bool = False,
) -> PushPlan:
    """Check the options of one `push` (nothing is sent); `InvalidJob` or `InvalidSchedule`
    name what is wrong."""
    schedule = schedule_of_push(delay, at, front)
    envelope = build_envelope(
        task, args, kwargs, job_id=job_id, max_attempts=max_attempts, timeout=timeout,
        unique=unique,
    )  # fmt: skip
    if after is None:
        return PushPlan(envelope, keys, schedule, None)
    if unique is not None:
        raise InvalidJob("_unique and _after do not go together", field="_unique")
    if durable:
        raise InvalidJob("_durable and _after do not go together", field="_durable")
    waited, known = dependency_ids(after, keys)
    steps = hold_steps(keys, envelope, waited, known, released_to(front, schedule))
    return PushPlan(envelope, keys, schedule, steps)


class ProducerBase:
    def __init__(
        self, *, queue: str, prefix: str, durable_timeout: float = DEFAULT_DURABLE_TIMEOUT
    ) -> None:
        if not durable_timeout > 0:
            raise ValueError(f"durable_timeout must be seconds > 0, not {durable_timeout!r}")
        self.queue = queue
        self.prefix = prefix
        # How long a durable push waits for a replica to confirm each batch.
        self.durable_timeout = durable_timeout
        self._keys = QueueKeys(queue, prefix)
        self._unique_tasks = UniqueTaskCatalogs()

    def keys_for(self, queue: str | None) -> QueueKeys:
        return self._keys if queue is None or queue == self.queue else QueueKeys(queue, self.prefix)
