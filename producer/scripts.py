"""Typed wrappers around the Lua scripts in `producer/lua/`.

Each function below describes one script call (its keys and arguments, all keys of one queue
taken from `QueueKeys`); `SyncScripts` and `AsyncScripts` run such calls on a redis-py client.
Scripts are registered once per client; redis-py's `Script` handles EVALSHA and re-loads a
script after `NOSCRIPT` (a restarted or flushed server).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import redis
import redis.asyncio

from producer.keys import QueueKeys

SCRIPT_NAMES = (
    "start",
    "ack",
    "dead",
    "requeue",
    "adopt",
    "retry",
    "recover",
    "promote",
    "revive",
    "purge",
)


@cache
def script_source(name: str) -> str:
    return resources.files("producer").joinpath("lua", f"{name}.lua").read_text("utf-8")


@dataclass(frozen=True, slots=True)
class ScriptCall:
    script: str
    keys: list[str]
    args: list[str | bytes | int | float]


def start_call(
    keys: QueueKeys,
    job_id: str,
    *,
    worker_id: str,
    started_at: float,
    ttl: int,
    task: str,
    max_attempts: int,
    enqueued_at: float | None,
) -> ScriptCall:
    enqueued = "" if enqueued_at is None else repr(float(enqueued_at))
    return ScriptCall(
        "start",
        [keys.job(job_id)],
        [worker_id, repr(started_at), ttl, task, keys.queue, max_attempts, enqueued],
    )


def ack_call(
    keys: QueueKeys,
    job_id: str,
    *,
    worker_id: str,
    raw: bytes,
    result_json: bytes,
    finished_at: float,
    ttl: int,
) -> ScriptCall:
    return ScriptCall(
        "ack",
        [keys.processing(worker_id), keys.job(job_id)],
        [raw, result_json, repr(finished_at), ttl],
    )


def dead_call(
    keys: QueueKeys,
    job_id: str,
    *,
    worker_id: str,
    raw: bytes,
    entry_json: bytes,
    reason: str,
    error: str,
    traceback: str,
    finished_at: float,
    ttl: int,
) -> ScriptCall:
    return ScriptCall(
        "dead",
        [keys.processing(worker_id), keys.dead, keys.job(job_id)],
        [raw, entry_json, reason, error, traceback, repr(finished_at), ttl],
    )


def requeue_call(keys: QueueKeys, job_id: str, *, worker_id: str, raw: bytes) -> ScriptCall:
    return ScriptCall("requeue", [keys.processing(worker_id), keys.ready, keys.job(job_id)], [raw])


def adopt_call(keys: QueueKeys, *, worker_id: str, raw: bytes, stamped: bytes) -> ScriptCall:
    return ScriptCall("adopt", [keys.processing(worker_id)], [raw, stamped])


def retry_call(
    keys: QueueKeys,
    job_id: str,
    *,
    worker_id: str,
    raw: bytes,
    due_ms: int,
    reason: str,
    error: str,
    traceback: str,
    ttl: int,
) -> ScriptCall:
    return ScriptCall(
        "retry",
        [keys.processing(worker_id), keys.delayed, keys.job(job_id)],
        [raw, due_ms, reason, error, traceback, ttl],
    )


def recover_call(keys: QueueKeys, owner: str) -> ScriptCall:
    return ScriptCall("recover", [keys.processing(owner), keys.worker(owner), keys.ready], [])


def promote_call(keys: QueueKeys, now_ms: int, limit: int) -> ScriptCall:
    return ScriptCall("promote", [keys.delayed, keys.ready], [now_ms, limit])


def revive_call(keys: QueueKeys, job_id: str, *, entry: bytes, raw: bytes, ttl: int) -> ScriptCall:
    return ScriptCall("revive", [keys.dead, keys.ready, keys.job(job_id)], [entry, raw, ttl])


def purge_call(keys: QueueKeys, *, cutoff: float, limit: int) -> ScriptCall:
    return ScriptCall("purge", [keys.dead], [repr(cutoff), limit])


class SyncScripts:
    """The scripts registered on a blocking redis-py client."""

    def __init__(self, client: redis.Redis) -> None:
        self._scripts = {name: client.register_script(script_source(name)) for name in SCRIPT_NAMES}

    def run(self, call: ScriptCall) -> Any:
        return self._scripts[call.script](keys=call.keys, args=call.args)


class AsyncScripts:
    """The scripts registered on an asyncio redis-py client."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._scripts = {name: client.register_script(script_source(name)) for name in SCRIPT_NAMES}

    async def run(self, call: ScriptCall) -> Any:
        return await self._scripts[call.script](keys=call.keys, args=call.args)
