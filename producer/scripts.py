"""Running Lua scripts: libraries of script files, and clients that run their calls.

A `ScriptLibrary` is a folder of scripts (`producer/lua/` for the producer's dead-letter tools,
`worker/jobs/lua/` for the worker's job protocol). Redis scripts cannot import, so each script
is sent as one text: the status values (`producer.statuses`), then the files of `lib/` it
names in its library's `uses`, then the script itself. A `ScriptCall` is one call (its keys,
all of one queue, and its arguments); `SyncScripts`, `AsyncScripts` and `PipelinedScripts` run
such calls on redis-py clients, by EVALSHA, loading a script again after `NOSCRIPT` (a
restarted or flushed server).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from typing import Any

import redis
import redis.asyncio
import redis.client
from redis.exceptions import NoScriptError

from producer.keys import QueueKeys
from producer.statuses import lua_status_table


@dataclass(frozen=True, slots=True)
class ScriptCall:
    script: str
    keys: list[str]
    args: list[str | bytes | int | float]


@dataclass(frozen=True)
class ScriptLibrary:
    """The scripts of one folder (`package`/lua/NAME.lua) and the `lib/` files each uses."""

    package: str
    names: tuple[str, ...]
    uses: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Scripts that take any number of jobs in one call: KEYS[1] and KEYS[2] are shared (the
    # worker's processing list, the queue's settling set), then each job's keys; each call
    # carries one job, and the script returns one result per job. Calls of such a script
    # with the same shared keys are merged into one command (`merge_calls`).
    job_batch_scripts: frozenset[str] = frozenset()

    @cached_property
    def sources(self) -> dict[str, str]:
        folder = resources.files(self.package).joinpath("lua")
        sources = {}
        for name in self.names:
            parts = [lua_status_table()]
            for lib in self.uses.get(name, ()):
                # "package:name" is a lib of another library (the worker's scripts use the
                # producer's group lib); a bare name is one of this library's own.
                package, _, lib_name = lib.rpartition(":")
                lib_folder = resources.files(package).joinpath("lua") if package else folder
                parts.append(lib_folder.joinpath("lib", f"{lib_name}.lua").read_text("utf-8"))
            parts.append(folder.joinpath(f"{name}.lua").read_text("utf-8"))
            sources[name] = "\n".join(parts)
        return sources

    @cached_property
    def shas(self) -> dict[str, str]:
        return {
            name: hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
            for name, source in self.sources.items()
        }


# What a script that gives a job its final status uses besides (lib/final.lua), in order.
FINAL_STATUS_LIBS = ("group", "unique", "notify", "after", "final")

# The producer's own scripts: the dead-letter tools of `producer dead`, the marking of the
# jobs a producer waits on, and cancelling.
PRODUCER_SCRIPTS = ScriptLibrary(
    "producer",
    ("revive", "purge", "watch", "cancel", "hold", "settle", "push_unique"),
    uses={
        "cancel": FINAL_STATUS_LIBS,
        "hold": ("group", "place"),
        "settle": (*FINAL_STATUS_LIBS, "place"),
        "push_unique": ("place",),
    },
)


# The keys every job of a job-batch script's call shares (see `ScriptLibrary`).
JOB_BATCH_SHARED_KEYS = 2


def merge_calls(
    calls: list[ScriptCall], job_batch_scripts: frozenset[str]
) -> tuple[list[ScriptCall], list[tuple[int, int | None]]]:
    """The commands that run `calls`: calls of a job-batch script with the same shared key go
    in one command. Also where each call's result will be: (command index, position in that
    command's list of results, or None when the command is the call itself)."""
    commands: list[ScriptCall] = []
    places: list[tuple[int, int | None]] = []
    merged: dict[tuple[str, ...], int] = {}
    jobs_in: dict[int, int] = {}  # command index -> jobs merged into it so far
    for call in calls:
        if call.script not in job_batch_scripts:
            places.append((len(commands), None))
            commands.append(call)
            continue
        shared = call.keys[:JOB_BATCH_SHARED_KEYS]
        group = (call.script, *shared)
        index = merged.get(group)
        if index is None:
            index = merged[group] = len(commands)
            commands.append(ScriptCall(call.script, list(shared), []))
        command = commands[index]
        # One result per job, whatever the number of keys a job brings (a group's, too).
        places.append((index, jobs_in.get(index, 0)))
        jobs_in[index] = jobs_in.get(index, 0) + 1
        command.keys.extend(call.keys[JOB_BATCH_SHARED_KEYS:])
        command.args.extend(call.args)
    return commands, places


class SyncScripts:
    """The scripts of a library registered on a blocking redis-py client."""

    def __init__(self, client: redis.Redis, library: ScriptLibrary) -> None:
        self._scripts = {
            name: client.register_script(source) for name, source in library.sources.items()
        }

    def run(self, call: ScriptCall) -> Any:
        return self._scripts[call.script](keys=call.keys, args=call.args)


class AsyncScripts:
    """The scripts of a library registered on an asyncio redis-py client."""

    def __init__(self, client: redis.asyncio.Redis, library: ScriptLibrary) -> None:
        self._scripts = {
            name: client.register_script(source) for name, source in library.sources.items()
        }

    async def run(self, call: ScriptCall) -> Any:
        return await self._scripts[call.script](keys=call.keys, args=call.args)


class PipelinedScripts:
    """Script calls from many coroutines, sent together on an asyncio redis-py client.

    Each round trip carries every call made while the previous one was under way (or in the
    same turn of the event loop), as one pipeline of EVALSHA commands: a thousand jobs
    finishing together cost a few round trips, not a thousand. Calls of a job-batch script
    with the same shared key go further: they are merged into one script call, which checks
    and records each job on its own. Each caller gets its own result or error. Scripts a server
    does not know (it restarted, or was flushed) are loaded and those calls sent again.
    """

    def __init__(
        self, client: redis.asyncio.Redis, library: ScriptLibrary, *, max_batch: int = 1000
    ) -> None:
        self._client = client
        self._library = library
        self._max_batch = max_batch
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
                await self._client.script_load(self._library.sources[name])
            again = await self._execute([batch[i][0] for i in unknown])
            for i, result in zip(unknown, again, strict=True):
                results[i] = result
        return results

    async def _execute(self, calls: list[ScriptCall]) -> list[Any]:
        """One result (or error) per call, the calls merged where their script allows."""
        commands, places = merge_calls(calls, self._library.job_batch_scripts)
        replies = await self._replies(commands)
        return [
            replies[index]
            if position is None or isinstance(replies[index], Exception)
            else replies[index][position]
            for index, position in places
        ]

    async def _replies(self, commands: list[ScriptCall]) -> list[Any]:
        """Send the commands as one pipeline; a reply (or error) for each."""
        return await self.pipeline_replies(self._client, commands)

    async def pipeline_replies(
        self, client: redis.asyncio.Redis, commands: list[ScriptCall]
    ) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        for command in commands:
            sha = self._library.shas[command.script]
            pipe.evalsha(sha, len(command.keys), *command.keys, *command.args)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies

    async def aclose(self) -> None:
        """Close what this holds besides the client it was given (nothing, here)."""


def revive_call(keys: QueueKeys, job_id: str, *, entry: bytes, raw: bytes, ttl: int) -> ScriptCall:
    return ScriptCall("revive", [keys.dead, keys.ready, keys.job(job_id)], [entry, raw, ttl])


def purge_call(keys: QueueKeys, *, cutoff: float, limit: int) -> ScriptCall:
    return ScriptCall("purge", [keys.dead], [repr(cutoff), limit])


def watch_call(keys: QueueKeys, job_ids: list[str], *, ttl: int) -> ScriptCall:
    return ScriptCall("watch", [keys.job(job_id) for job_id in job_ids], [ttl])


def cancel_call(
    keys: QueueKeys,
    job_id: str,
    *,
    raw: bytes | None,
    ttl: int,
    now: float,
    job_group: str | None = None,
    unique_key: str | None = None,
) -> ScriptCall:
    """`unique_key`: the job's unique key (its record's `unique`), let go if it holds it."""
    links = [] if job_group is None else [keys.group(job_group)]
    flag = "" if job_group is None else "g"
    if unique_key is not None:
        links.append(keys.unique(unique_key))
        flag += "u"
    return ScriptCall(
        "cancel",
        [keys.job(job_id), keys.ready, keys.delayed, keys.settling, *links],
        [repr(now), ttl, raw or b"", job_id, keys.cancel_channel, flag],
    )
