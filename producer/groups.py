"""Groups of jobs with a callback (docs/futures.md#groups): `p.group([call(...), ...],
then=call(...))` pushes the members and, once every member has a final status (succeeded,
dead or cancelled), the callback job is pushed exactly once, by the worker script that gave the
last member its status (producer/lua/lib/group.lua). The callback receives `results`, the
members' outcomes in order.

This module checks the calls and plans what one MULTI/EXEC writes: the group's hash, each
member's record (`group_id`, `group_index`) and the members themselves, so a group is pushed
whole or not at all; the producers send it. A member may wait for jobs pushed before it and
for members listed before it (`call(..., _after=[...])`, producer/dependencies.py): it is
held, not pushed, until they have succeeded.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import orjson

from producer.dependencies import as_eval, check_exist, dependency_ids, hold_call
from producer.envelope import JobEnvelope, build_envelope, new_job_id
from producer.errors import InvalidJob
from producer.keys import QueueKeys
from producer.steps import Step, Transaction

# How long a group's hash (and a member's record before its start) is kept: a group whose
# members have not all ended by then never calls back.
GROUP_TTL = 30 * 24 * 3600

JobT = TypeVar("JobT")


@dataclass(frozen=True, slots=True)
class Call:
    """A job of a group, not pushed yet: `call(task, *args, **kwargs)`."""

    envelope: JobEnvelope
    queue: str | None = None
    after: tuple[Any, ...] = ()  # jobs, ids or earlier members of the group

    @property
    def id(self) -> str:
        return str(self.envelope.id)


def call(
    task: str,
    *args: Any,
    _id: str | None = None,
    _max_attempts: int | None = None,
    _timeout: float | None = None,
    _queue: str | None = None,
    _after: Any = None,
    **kwargs: Any,
) -> Call:
    """A member or the callback of a group; checked now (`InvalidJob` for a non-JSON
    argument), pushed by `group`. Options as for `push`; `_after` lists jobs, job ids or
    members listed before this one that it waits for."""
    envelope = build_envelope(
        task, args, kwargs, job_id=_id, max_attempts=_max_attempts, timeout=_timeout
    )
    if _after is None:
        return Call(envelope, _queue)
    after = (_after,) if isinstance(_after, str | Call) or hasattr(_after, "id") else _after
    return Call(envelope, _queue, tuple(after))


@dataclass(frozen=True, slots=True)
class Group(Generic[JobT]):
    """A pushed group: its id, the futures of its members (in order) and of its callback."""

    id: str
    members: list[JobT]
    callback: JobT


@dataclass(frozen=True, slots=True)
class GroupPlan:
    group_id: str
    keys: QueueKeys
    members: list[JobEnvelope]
    callback: JobEnvelope
    group_fields: dict[str, str | int | float | bytes]
    # Members held for others: index in `members` -> the ids they wait for.
    holds: dict[int, list[str]] = field(default_factory=dict)
    # Jobs outside the group that members wait for, and which of them this process pushed.
    outside: list[str] = field(default_factory=list)
    pushed: set[str] = field(default_factory=set)

    @property
    def member_ids(self) -> list[str]:
        return [str(member.id) for member in self.members]

    @property
    def callback_id(self) -> str:
        return str(self.callback.id)

    def commands(self) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
        """The writes of the group, in order, as (method, args, kwargs) of a redis-py
        pipeline: sent in one MULTI/EXEC (every key is in the queue's slot)."""
        group_key = self.keys.group(self.group_id)
        writes: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
            ("hset", (group_key,), {"mapping": self.group_fields}),
            ("expire", (group_key, GROUP_TTL), {}),
        ]
        for index, member in enumerate(self.members, start=1):
            record = self.keys.job(str(member.id))
            fields = {"group_id": self.group_id, "group_index": index}
            writes.append(("hset", (record,), {"mapping": fields}))
            writes.append(("expire", (record, GROUP_TTL), {}))
        # LPUSH a b c leaves c b a: workers take from the right, so members start in order.
        free = [m.to_json() for i, m in enumerate(self.members) if i not in self.holds]
        if free:
            writes.append(("lpush", (self.keys.ready, *free), {}))
        for index, after in self.holds.items():
            member = self.members[index]
            writes.append(
                as_eval(hold_call(self.keys, member, after, released="back", group=self.group_id))
            )
        return writes

    def steps(self) -> Generator[Step, Any, None]:
        """Check that the outside jobs waited for exist, then write the group."""
        yield from check_exist(self.keys, [i for i in self.outside if i not in self.pushed])
        yield Transaction(self.commands())


def plan_group(calls: Sequence[Call], then: Call, keys: QueueKeys) -> GroupPlan:
    """Check a group and plan its writes; `InvalidJob` names what is wrong."""
    if isinstance(calls, Call) or not isinstance(calls, Sequence):
        raise InvalidJob("a group's members must be a list of call(...)", field="calls")
    if not calls:
        raise InvalidJob("a group needs at least one member", field="calls")
    for index, member in enumerate(calls):
        if not isinstance(member, Call):
            raise InvalidJob(f"member {index} is {type(member).__name__}, not a call(...)")
        _same_queue(member, keys, f"member {index}")
    if not isinstance(then, Call):
        raise InvalidJob("the callback (then=) must be a call(...)", field="then")
    _same_queue(then, keys, "the callback")
    if then.after:
        raise InvalidJob(
            "the callback runs once the group has ended: it takes no _after", field="_after"
        )
    members = [member.envelope.model_copy() for member in calls]
    ids = [str(envelope.id) for envelope in members]
    if len(set(ids)) != len(ids) or then.envelope.id in ids:
        raise InvalidJob("two jobs of the group have the same id", field="id")
    group_id = new_job_id()
    for envelope in members:
        envelope.__dict__["group"] = group_id  # valid by construction (see `stamp`)
    placeholder = f"__coroq_results_{group_id}__"
    callback = _with_results(then.envelope, placeholder)
    holds, outside, pushed = _waits(calls, keys)
    fields: dict[str, str | int | float | bytes] = {
        "size": len(members),
        "left": len(members),
        "callback": callback.to_json(),
        "placeholder": orjson.dumps(placeholder),
        "callback_id": str(callback.id),
        "created_at": repr(time.time()),
    }
    return GroupPlan(group_id, keys, members, callback, fields, holds, outside, pushed)


def _waits(
    calls: Sequence[Call], keys: QueueKeys
) -> tuple[dict[int, list[str]], list[str], set[str]]:
    """What each member waits for: members listed before it (by call or by id) or jobs
    outside the group. A member can wait for no member listed after it: no cycle."""
    position = {member.id: index for index, member in enumerate(calls)}
    holds: dict[int, list[str]] = {}
    outside: list[str] = []
    pushed: set[str] = set()
    for index, member in enumerate(calls):
        if not member.after:
            continue
        after = [_member_id(item, calls, index) for item in member.after]
        ids, from_here = dependency_ids(after, keys)
        for job_id in ids:
            at = position.get(job_id)
            if at is None:
                outside.append(job_id)
                if job_id in from_here:
                    pushed.add(job_id)
            elif at >= index:
                raise InvalidJob(
                    f"member {index} waits for member {at}, listed "
                    + ("as itself" if at == index else "after it")
                    + ": list the jobs waited for first",
                    field="_after",
                )
        holds[index] = ids
    return holds, outside, pushed


def _member_id(item: Any, calls: Sequence[Call], index: int) -> Any:
    """A member waited for, as its id; anything else as it is."""
    if not isinstance(item, Call):
        return item
    if not any(item is member for member in calls):
        raise InvalidJob(
            f"member {index} waits for a call(...) that is not a member of this group",
            field="_after",
        )
    return item.id


def _same_queue(member: Call, keys: QueueKeys, what: str) -> None:
    if member.queue is not None and member.queue != keys.queue:
        raise InvalidJob(
            f"{what} is for queue {member.queue!r}: a group's members and callback share the "
            f"group's queue ({keys.queue!r})",
            field="_queue",
        )


def _with_results(envelope: JobEnvelope, placeholder: str) -> JobEnvelope:
    """The callback's envelope with the placeholder of `results`: a keyword argument, or the
    last positional one."""
    callback = envelope.model_copy()
    if isinstance(callback.args, dict):
        if "results" in callback.args:
            raise InvalidJob("the callback's arguments already have 'results'", field="args")
        callback.__dict__["args"] = {**callback.args, "results": placeholder}
    else:
        callback.__dict__["args"] = [*callback.args, placeholder]
    return callback
