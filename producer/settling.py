"""Settling the jobs held for a job that has ended (docs/futures.md#dependencies).

The script that gives a job with dependents its final status puts the job's id in the
queue's settling set and publishes it (producer/lua/lib/after.lua); this reads the job's
list of dependents and their groups, then runs producer/lua/settle.lua, whose KEYS name them
all, to push or cancel each one. Workers do it when they hear the id, and for every id of
the set after they (re)subscribe; a producer does it at once for a job it cancelled. Any
number of them may do it at the same time: each id is settled once.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

from producer.completions import WATCH_TTL
from producer.keys import QueueKeys
from producer.scripts import ScriptCall
from producer.steps import ReadFields, ReadList, ReadSetSample, Step, text

# Ids read from the settling set at a time.
SETTLE_BATCH = 100
# Reads of the set before giving up for now (a dependent cancelled here may mark more): the
# next message or subscription comes back for what is left.
MAX_ROUNDS = 50


def settle_steps(keys: QueueKeys) -> Generator[Step, Any, int]:
    """Settle what the queue's settling set holds; returns how many ended jobs were settled."""
    settled = 0
    for _ in range(MAX_ROUNDS):
        ids = [text(job_id) for job_id in (yield ReadSetSample(keys.settling, SETTLE_BATCH))]
        if not ids:
            break
        for job_id in ids:
            settled += yield from _settle_one(keys, job_id)
    return settled


def _settle_one(keys: QueueKeys, job_id: str) -> Generator[Step, Any, int]:
    for _ in range(3):  # its list read again if it changed between the read and the script
        dependents = [text(i) for i in (yield ReadList(keys.dependents(job_id)))]
        groups: list[list[Any]] = []
        if dependents:
            groups = yield ReadFields([keys.job(i) for i in dependents], ("group_id",))
        outcome = yield settle_call(keys, job_id, dependents, [g[0] for g in groups])
        if outcome != -1:
            return int(outcome)
    return 0


def settle_call(
    keys: QueueKeys, job_id: str, dependents: Sequence[str], groups: Sequence[Any]
) -> ScriptCall:
    waiting: list[str] = []
    flags: list[str] = []
    for dependent, group in zip(dependents, groups, strict=True):
        waiting.append(keys.job(dependent))
        if group is None:
            flags.append("")
        else:
            waiting.append(keys.group(text(group)))
            flags.append("g")
    return ScriptCall(
        "settle",
        [keys.settling, keys.ready, keys.delayed, keys.job(job_id), keys.dependents(job_id),
         *waiting],
        [job_id, WATCH_TTL, len(dependents), *flags],
    )  # fmt: skip
