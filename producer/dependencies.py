"""Jobs that wait for others (docs/futures.md#dependencies), shared by both producers.

`submit(task, ..., _after=[job, "id", ...])` holds the job in Redis, in its record, until
every job it waits for has succeeded; one that ends dead or cancelled cancels it, naming
itself in the reason (producer/lua/hold.lua and lib/after.lua, run by whichever script gives
the job waited for its final status). A job may wait only for jobs that exist already, and
its own id must be new: so every wait points from a newer job to an older one, and no cycle
can be built.

The checks and the writes are steps (`producer.steps`), run by each producer.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable, Sequence
from typing import Any

import orjson

from producer.completions import WATCH_TTL
from producer.envelope import MAX_ID_LENGTH, JobEnvelope
from producer.errors import InvalidJob
from producer.keys import QueueKeys
from producer.schedule import Schedule
from producer.scripts import PRODUCER_SCRIPTS, ScriptCall
from producer.steps import Pause, ReadFields, Step, scan_entries, text

# Pauses between the looks for a job taken from the ready list and not yet started (seconds).
TAKEN_NOT_STARTED_PAUSES = (0.0, 0.05, 0.25)

# How long a job may stay held (its record, and the lists of the jobs it waits for): one
# still held after that is dropped, as a group whose members have not all ended.
HOLD_TTL = 30 * 24 * 3600


def dependency_ids(after: Any, keys: QueueKeys) -> tuple[list[str], set[str]]:
    """The ids in `_after` (job futures or ids, in this queue), without repeats; and those of
    futures this process pushed, which need no check that they exist."""
    items = [after] if isinstance(after, str) or hasattr(after, "id") else after
    if not isinstance(items, Iterable):
        raise InvalidJob(
            f"_after must be a list of jobs or job ids, not {type(after).__name__}",
            field="_after",
        )
    ids: list[str] = []
    pushed: set[str] = set()
    for item in items:
        job_id = _id_of(item, keys)
        if getattr(item, "pushed", False):
            pushed.add(job_id)
        if job_id not in ids:
            ids.append(job_id)
    if not ids:
        raise InvalidJob(
            "_after is empty: name the jobs to wait for, or leave it out", field="_after"
        )
    return ids, pushed


def _id_of(item: Any, keys: QueueKeys) -> str:
    if isinstance(item, str):
        if not 0 < len(item) <= MAX_ID_LENGTH:
            raise InvalidJob(f"_after holds an invalid job id {item!r}", field="_after")
        return item
    job_id, queue = getattr(item, "id", None), getattr(item, "queue", None)
    if not isinstance(job_id, str) or not isinstance(queue, str):
        raise InvalidJob(
            f"_after holds {type(item).__name__}: give jobs (futures) or job ids (a call(...) "
            "can be waited for only by a later member of its own group)",
            field="_after",
        )
    if queue != keys.queue:
        raise InvalidJob(
            f"_after: job {job_id} is in queue {queue!r}; a job can wait only for jobs of its "
            f"own queue ({keys.queue!r})",
            field="_after",
        )
    return job_id


def released_to(front: bool, schedule: Schedule | None) -> str:
    """Where a held job goes once released: 'back' or 'front' of the ready list, or its due
    time (epoch ms) in the delayed set, counted from now."""
    if schedule is not None:
        return str(schedule.due_ms(time.time()))
    return "front" if front else "back"


def check_exist(keys: QueueKeys, ids: Sequence[str]) -> Generator[Step, Any, None]:
    """Raise `InvalidJob` unless every job exists: it has a record (started, ended, held or
    in a group), or its bytes wait in the ready list or the delayed set."""
    if not ids:
        return
    found = yield ReadFields([keys.job(job_id) for job_id in ids], ("status", "group_id"))
    missing = [job_id for job_id, fields in zip(ids, found, strict=True) if not any(fields)]
    if not missing:
        return
    waiting = yield from scan_entries(missing)
    missing = [job_id for job_id in missing if job_id not in waiting]
    # One may have been taken during the scan: in a worker's processing list, without a
    # record until its start is counted, a moment later.
    for pause in TAKEN_NOT_STARTED_PAUSES:
        if not missing:
            break
        if pause:
            yield Pause(pause)
        found = yield ReadFields([keys.job(job_id) for job_id in missing], ("status",))
        missing = [job_id for job_id, fields in zip(missing, found, strict=True) if not fields[0]]
    if missing:
        raise InvalidJob(
            f"_after: no job {missing[0]!r} in queue {keys.queue!r} (never pushed, or its "
            "record has expired)",
            field="_after",
        )


def hold_call(
    keys: QueueKeys,
    envelope: JobEnvelope,
    after: Sequence[str],
    *,
    released: str,
    group: str | None = None,
) -> ScriptCall:
    """The call of hold.lua; `group`: the group of a member (counted there if cancelled)."""
    job_id = str(envelope.id)
    waited = [key for dep in after for key in (keys.job(dep), keys.dependents(dep))]
    group_key = [] if group is None else [keys.group(group)]
    return ScriptCall(
        "hold",
        [keys.job(job_id), keys.ready, keys.delayed, *waited, *group_key],
        [
            envelope.to_json(),
            released,
            HOLD_TTL,
            WATCH_TTL,
            orjson.dumps(list(after)),
            "" if group is None else "member",
            repr(envelope.enqueued_at),
            *after,
        ],
    )


def as_eval(call: ScriptCall) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """A script call as a pipeline's `eval` (its text, not its digest: inside MULTI/EXEC a
    script the server does not know could not be loaded and sent again)."""
    source = PRODUCER_SCRIPTS.sources[call.script]
    return ("eval", (source, len(call.keys), *call.keys, *call.args), {})


def hold_steps(
    keys: QueueKeys,
    envelope: JobEnvelope,
    after: Sequence[str],
    pushed: set[str],
    released: str,
) -> Generator[Step, Any, None]:
    """Check, then push `envelope` held until the jobs `after` have succeeded."""
    yield from check_exist(keys, [job_id for job_id in after if job_id not in pushed])
    outcome = yield hold_call(keys, envelope, after, released=released)
    if text(outcome[0]) == "exists":
        raise InvalidJob(
            f"job id {envelope.id!r} is taken in queue {keys.queue!r} (its job is "
            f"{text(outcome[1])}): a job that waits for others needs a new id",
            field="_id",
        )
