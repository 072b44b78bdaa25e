"""Typed wrappers around the Lua scripts in `producer/lua/`.

Each function below describes one script call (its keys and arguments, all keys of one queue
taken from `QueueKeys`); `SyncScripts` and `AsyncScripts` run such calls on a redis-py client.
Scripts are registered once per client; redis-py's `Script` handles EVALSHA and re-loads a
script after `NOSCRIPT` (a restarted or flushed server).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import redis
import redis.asyncio
import redis.client
from redis.exceptions import NoScriptError

from producer.keys import QueueKeys

SCRIPT_NAMES = (
    "take",
    "start",
    "start_popped",
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


# Scripts that begin with the functions of another file (Redis scripts cannot import).
SCRIPT_PRELUDES = {"take": "start_job", "start_popped": "start_job"}


@cache
def script_source(name: str) -> str:
    text = resources.files("producer").joinpath("lua", f"{name}.lua").read_text("utf-8")
    prelude = SCRIPT_PRELUDES.get(name)
    return text if prelude is None else f"{script_source(prelude)}\n{text}"


@dataclass(frozen=True, slots=True)
class ScriptCall:
    script: str
    keys: list[str]
    args: list[str | bytes | int | float]


# Scripts that take any number of jobs in one call: KEYS[1] is shared (the worker's processing
# list), then one key per job, and this many arguments per job; they return one result per job.
# Calls of such a script with the same KEYS[1] can be merged into one (`merge_calls`).
JOB_BATCH_SCRIPTS = {"ack": 5}


def merge_calls(calls: list[ScriptCall]) -> tuple[list[ScriptCall], list[tuple[int, int | None]]]:
    """The commands that run `calls`: calls of a `JOB_BATCH_SCRIPTS` script with the same
    shared key go in one command. Also where each call's result will be: (command index,
    position in that command's list of results, or None when the command is the call itself).
    """
    commands: list[ScriptCall] = []
    places: list[tuple[int, int | None]] = []
    merged: dict[tuple[str, str], int] = {}
    for call in calls:
        if call.script not in JOB_BATCH_SCRIPTS:
            places.append((len(commands), None))
            commands.append(call)
            continue
        group = (call.script, call.keys[0])
        index = merged.get(group)
        if index is None:
            index = merged[group] = len(commands)
            commands.append(ScriptCall(call.script, [call.keys[0]], []))
        command = commands[index]
        places.append((index, len(command.keys) - 1))
        command.keys.extend(call.keys[1:])
        command.args.extend(call.args)
    return commands, places


def _attempt_arg(attempt: int | None) -> str:
    """The attempt an outcome belongs to, for the scripts' fencing ('' when none started)."""
    return "" if attempt is None else str(attempt)


def take_call(
    keys: QueueKeys,
    worker_id: str,
    now_ms: int,
    most: int,
    promote_limit: int,
    starts: MovedJobStarts | None = None,
    token: str = "",
) -> ScriptCall:
    """Take up to `most` jobs (due delayed jobs promoted first); with `starts`, also count
    the start of each job taken that the script can vouch for (start_job.lua), with `token`
    in its record (`start_token`)."""
    args: list[str | bytes | int | float] = [now_ms, most, promote_limit]
    if starts is not None:
        args.extend(starts.args(token))
    return ScriptCall("take", [keys.ready, keys.processing(worker_id), keys.delayed], args)


@dataclass(frozen=True, slots=True)
class MovedJobStarts:
    """What take.lua and start_popped.lua need to count the start of a job they move into a
    worker's processing list (start_job.lua), but the token of the call. A consumer builds
    it once."""

    before_token: tuple[str | bytes | int | float, ...]
    after_token: tuple[str | bytes | int | float, ...]

    def args(self, token: str) -> list[str | bytes | int | float]:
        return [*self.before_token, token, *self.after_token]

    @classmethod
    def of(
        cls,
        keys: QueueKeys,
        *,
        worker_id: str,
        ttl: int,
        max_payload_bytes: int,
        default_max_attempts: int,
        task_max_attempts: dict[str, int | None],
    ) -> MovedJobStarts:
        tasks: list[str | int] = []
        for task, max_attempts in task_max_attempts.items():
            tasks.extend((task, max_attempts or 0))
        return cls(
            (worker_id, ttl, keys.queue, keys.job("")),
            (max_payload_bytes, default_max_attempts, *tasks),
        )


@dataclass(frozen=True, slots=True)
class JobStart:
    """One job of a `start_call`: what its record shows while it runs."""

    job_id: str
    raw: bytes  # as held in the processing list
    task: str
    max_attempts: int
    enqueued_at: float | None


def start_token(prefix: str) -> str:
    """A token unique to one start call, beginning with its consumer's `prefix`."""
    return f"{prefix}{random.getrandbits(64):016x}"


def start_call(
    keys: QueueKeys,
    starts: list[JobStart],
    *,
    worker_id: str,
    started_at: float,
    ttl: int,
    token: str | None = None,
    token_prefix: str = "",
) -> ScriptCall:
    """Count a new attempt of each job still held (one round trip for a batch); returns the
    attempt numbers, 0 for a job no longer held.

    The call carries a token, by default a new one beginning with `token_prefix`
    (`start_token`), so sending it again after a lost reply (the connection dropped) counts
    nothing twice. Given the token of the take that moved the jobs, it does not count again
    the jobs whose start that take counted.
    """
    if token is None:
        token = start_token(token_prefix)
    args: list[str | bytes | int | float] = [worker_id, repr(started_at), ttl, keys.queue, token]
    for start in starts:
        enqueued = "" if start.enqueued_at is None else repr(float(start.enqueued_at))
        args.extend((start.raw, start.task, start.max_attempts, enqueued))
    records = [keys.job(start.job_id) for start in starts]
    return ScriptCall("start", [keys.processing(worker_id), *records], args)


def start_popped_call(
    keys: QueueKeys, *, worker_id: str, token: str, token_prefix: str, starts: MovedJobStarts
) -> ScriptCall:
    """Count the start of the job a BLMOVE just moved to the head of the worker's processing
    list, when the job is new and well formed (start_popped.lua says how it tells); returns
    [] when it started nothing, else [job id, attempt number]. Sent right behind the pop."""
    return ScriptCall(
        "start_popped", [keys.processing(worker_id)], [token_prefix, *starts.args(token)]
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
    attempt: int | None,
) -> ScriptCall:
    return ScriptCall(
        "ack",
        [keys.processing(worker_id), keys.job(job_id)],
        [raw, result_json, repr(finished_at), ttl, _attempt_arg(attempt)],
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
    attempt: int | None,
) -> ScriptCall:
    return ScriptCall(
        "dead",
        [keys.processing(worker_id), keys.dead, keys.job(job_id)],
        [raw, entry_json, reason, error, traceback, repr(finished_at), ttl, _attempt_arg(attempt)],
    )


def requeue_call(
    keys: QueueKeys,
    job_id: str,
    *,
    worker_id: str,
    raw: bytes,
    start_tokens: Sequence[str] | None = None,
) -> ScriptCall:
    """Put a held job back in the ready list and take back its counted start: always (a job
    stopped by shutdown), or, given `start_tokens`, only when one of those calls counted it
    (requeue.lua); an empty `start_tokens` takes back nothing."""
    args: list[str | bytes | int | float] = [raw]
    if start_tokens is not None:
        args += ["only-tokens", *start_tokens]
    return ScriptCall("requeue", [keys.processing(worker_id), keys.ready, keys.job(job_id)], args)


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
    attempt: int,
) -> ScriptCall:
    return ScriptCall(
        "retry",
        [keys.processing(worker_id), keys.delayed, keys.job(job_id)],
        [raw, due_ms, reason, error, traceback, ttl, _attempt_arg(attempt)],
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

    def queue_on(self, pipe: redis.client.Pipeline, call: ScriptCall) -> None:
        """Queue the call on a pipeline as a bare EVALSHA (no SCRIPT EXISTS check first): a
        reply of `NoScriptError` means it did not run; `load` it, and call again."""
        sha = self._scripts[call.script].sha
        pipe.evalsha(sha, len(call.keys), *call.keys, *call.args)

    def load(self, name: str) -> None:
        script = self._scripts[name]
        script.registered_client.script_load(script.script)


class AsyncScripts:
    """The scripts registered on an asyncio redis-py client."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._scripts = {name: client.register_script(script_source(name)) for name in SCRIPT_NAMES}

    async def run(self, call: ScriptCall) -> Any:
        return await self._scripts[call.script](keys=call.keys, args=call.args)


class PipelinedScripts:
    """Script calls from many coroutines, sent together on an asyncio redis-py client.

    Each round trip carries every call made while the previous one was under way (or in the
    same turn of the event loop), as one pipeline of EVALSHA commands: a thousand jobs
    finishing together cost a few round trips, not a thousand. Acknowledgements of one worker
    go further: they are merged into one script call (`merge_calls`), which checks and records
    each job on its own. Each caller gets its own result or error. Scripts a server
    does not know (it restarted, or was flushed) are loaded and those calls sent again.
    """

    def __init__(self, client: redis.asyncio.Redis, *, max_batch: int = 1000) -> None:
        self._client = client
        self._max_batch = max_batch
        self._shas = {
            name: hashlib.sha1(script_source(name).encode(), usedforsecurity=False).hexdigest()
            for name in SCRIPT_NAMES
        }
        self._pending: list[tuple[ScriptCall, asyncio.Future[Any]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def run(self, call: ScriptCall) -> Any:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((call, future))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_pending())
        return await future

    async def _send_pending(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                try:
                    results = await self._send(batch)
                except Exception as exc:  # noqa: BLE001 - each caller decides what to do
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():  # its caller was cancelled; the script ran regardless
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._sender = None

    async def _send(self, batch: list[tuple[ScriptCall, asyncio.Future[Any]]]) -> list[Any]:
        results = await self._execute([call for call, _ in batch])
        unknown = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if unknown:  # NOSCRIPT: those calls did not run
            for name in {batch[i][0].script for i in unknown}:
                await self._client.script_load(script_source(name))
            again = await self._execute([batch[i][0] for i in unknown])
            for i, result in zip(unknown, again, strict=True):
                results[i] = result
        return results

    async def _execute(self, calls: list[ScriptCall]) -> list[Any]:
        """One result (or error) per call, the calls merged where their script allows."""
        commands, places = merge_calls(calls)
        pipe = self._client.pipeline(transaction=False)
        for command in commands:
            pipe.evalsha(
                self._shas[command.script], len(command.keys), *command.keys, *command.args
            )
        replies = await pipe.execute(raise_on_error=False)
        return [
            replies[index]
            if position is None or isinstance(replies[index], Exception)
            else replies[index][position]
            for index, position in places
        ]
