"""What every Lua script of the worker and the producer may do: reach keys only through KEYS
(so a script stays on the one slot of its queue in a Redis Cluster, and docs/protocol.md's
key lists are complete), and name statuses only through the `STATUS` table.

The KEYS check runs each script as the code sends it, against the suite's real redis-server,
with a test-only prelude that shadows `redis` by a table whose `call` refuses any key that is
not one of KEYS."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
import redis
import redis.asyncio
from redis.exceptions import ResponseError

import producer.batches
import producer.client
import producer.completions_thread
import producer.dead_letters
import producer.dependencies
import worker.jobs.protocol
import worker.jobs.queues
from producer.cancelling import CancelOutcome
from producer.client import Producer
from producer.dead_letters import DeadLetters
from producer.groups import call
from producer.keys import QueueKeys
from producer.scripts import PRODUCER_SCRIPTS, ScriptLibrary
from producer.statuses import JobStatus, lua_status_table
from tests.conftest import REPO_ROOT
from worker.jobs.protocol import (
    WORKER_SCRIPTS,
    Failure,
    JobLimits,
    JobLinks,
    JobStart,
    QueueProtocol,
    Started,
    start_token,
    started,
)
from worker.jobs.queues import AsyncQueue, SyncQueue, pipelined_worker_scripts

T = TypeVar("T")

WORKER = "w-1"
TTL = 600
FAILURE = Failure("handler_error", "RuntimeError: boom", "Traceback ...")
ONE_AT_A_TIME = JobLinks(limits=JobLimits("one", None, 1))
TWO_A_MINUTE = JobLinks(limits=JobLimits("two", (2, 60_000.0), None))
A_MINUTE_APART = JobLinks(limits=JobLimits("minute", (1, 60_000.0), None))
LUA_FOLDERS = [REPO_ROOT / "worker" / "jobs" / "lua", REPO_ROOT / "producer" / "lua"]
LIBRARIES = {"worker/jobs/lua": WORKER_SCRIPTS, "producer/lua": PRODUCER_SCRIPTS}

# For each command a script may send: how many of its first arguments are keys ("all": every
# one). A command missing here is refused too, so a new command cannot slip past the check.
KEY_CHECK = """
-- Test only: every key a command names must be one of KEYS.
local redis = (function(real)
  local leading_keys = {
    GET = 1, SET = 1, HGET = 1, HSET = 1, HINCRBY = 1, HMGET = 1, HDEL = 1, HGETALL = 1, HKEYS = 1,
    EXPIRE = 1, TTL = 1, LREM = 1, LPUSH = 1, RPUSH = 1, LPOP = 1, RPOP = 1, LPOS = 1,
    LINDEX = 1, LTRIM = 1, LRANGE = 1, LLEN = 1, ZADD = 1, ZRANGE = 1, ZRANGEBYSCORE = 1, ZREM = 1,
    ZCARD = 1, ZSCORE = 1, ZREMRANGEBYSCORE = 1, PEXPIRE = 1, SADD = 1, SREM = 1,
    SISMEMBER = 1, LMOVE = 2, RPOPLPUSH = 2, EXISTS = 'all',
    DEL = 'all', UNLINK = 'all', TIME = 0,
    PUBLISH = 0,
  }
  local declared = {}
  for _, key in ipairs(KEYS) do
    declared[key] = true
  end
  local function check(command, ...)
    local name = string.upper(command)
    local count = leading_keys[name]
    if count == nil then
      error('key check: ' .. name .. ' is not a command the key check knows')
    end
    local args = {...}
    if count == 'all' then
      count = #args
    end
    for i = 1, count do
      if not declared[args[i]] then
        error('key check: ' .. name .. ' names ' .. tostring(args[i]) .. ', not one of KEYS')
      end
    end
  end
  return setmetatable({
    call = function(command, ...)
      check(command, ...)
      return real.call(command, ...)
    end,
    pcall = function(command, ...)
      check(command, ...)
      return real.pcall(command, ...)
    end,
  }, {__index = real})
end)(redis)
"""


def with_key_check(source: str, mark: str = "") -> str:
    """`source` (a script as a library sends it) with the key check right after the status
    table, before the lib files, so their calls are checked too. `mark` makes the text (and
    so its SHA) unique, to tell afterwards that this very text ran."""
    status_table = lua_status_table()
    assert source.startswith(status_table)
    return f"{status_table}-- {mark}\n{KEY_CHECK}{source[len(status_table) :]}"


@dataclass(frozen=True)
class KeyCheckedLibrary(ScriptLibrary):
    """A library whose scripts are sent with the key check."""

    mark: str = ""

    @cached_property
    def sources(self) -> dict[str, str]:
        plain = ScriptLibrary.sources.func(self)
        return {name: with_key_check(source, self.mark) for name, source in plain.items()}


def key_checked(library: ScriptLibrary, mark: str) -> KeyCheckedLibrary:
    return KeyCheckedLibrary(
        library.package, library.names, library.uses, library.job_batch_scripts, mark=mark
    )


# --- the check itself --------------------------------------------------------------------


def run_checked(client: redis.Redis, body: str, keys: list[str], args: list[Any]) -> Any:
    script = client.register_script(with_key_check(f"{lua_status_table()}\n{body}"))
    return script(keys=keys, args=args)


def test_a_script_that_reaches_its_keys_through_keys_runs(
    redis_client: redis.Redis, keys: QueueKeys
) -> None:
    body = """
    redis.call('HSET', KEYS[1], 'status', STATUS.queued)
    redis.call('LMOVE', KEYS[2], KEYS[3], 'RIGHT', 'LEFT')
    redis.call('EXPIRE', KEYS[1], 60)
    return redis.call('EXISTS', KEYS[1], KEYS[3])
    """
    redis_client.rpush(keys.ready, b"job")
    found = run_checked(redis_client, body, [keys.job("j"), keys.ready, keys.dead], [])
    assert found == 2
    assert redis_client.hget(keys.job("j"), "status") == b"queued"


BAD_SCRIPTS = {
    "a key built in Lua": "redis.call('HSET', KEYS[1] .. ':shadow', 'status', 'x')",
    "a key taken from ARGV": "redis.call('RPUSH', ARGV[1], 'x')",
    "the second key of LMOVE": "redis.call('LMOVE', KEYS[1], KEYS[1] .. ':shadow', 'LEFT', 'LEFT')",
    "one key of many": "redis.call('DEL', KEYS[1], KEYS[1] .. ':shadow')",
    "a key built in a lib function": (
        "local function touch(key) redis.call('LPUSH', key, 'x') end\ntouch(KEYS[1] .. ':shadow')"
    ),
    "through pcall": "return redis.pcall('SET', KEYS[1] .. ':shadow', 'x')",
}


@pytest.mark.parametrize("body", BAD_SCRIPTS.values(), ids=BAD_SCRIPTS.keys())
def test_a_script_that_builds_a_key_is_refused_before_it_writes(
    redis_client: redis.Redis, keys: QueueKeys, body: str
) -> None:
    declared, built = keys.ready, f"{keys.ready}:shadow"
    redis_client.rpush(declared, b"job")
    with pytest.raises(ResponseError, match="not one of KEYS"):
        run_checked(redis_client, body, [declared], [built])
    assert redis_client.lrange(declared, 0, -1) == [b"job"]
    assert not redis_client.exists(built)
    # Without the check, the server runs it and something changes: the check refused it.
    redis_client.register_script(body)(keys=[declared], args=[built])
    assert (redis_client.lrange(declared, 0, -1), redis_client.exists(built)) != ([b"job"], 0)


def test_a_command_the_check_does_not_know_is_refused(
    redis_client: redis.Redis, keys: QueueKeys
) -> None:
    with pytest.raises(ResponseError, match="SMOVE is not a command the key check knows"):
        run_checked(redis_client, "redis.call('SMOVE', KEYS[1], KEYS[1], 'x')", [keys.ready], [])
    assert not redis_client.exists(keys.ready)


# --- every script, driven through its normal paths with the check ----------------------------


@dataclass
class Bench:
    """One worker's faces of the protocol and the producer's dead-letter tools, all sending
    the key-checked scripts."""

    client: redis.Redis
    redis_url: str
    keys: QueueKeys
    queue: SyncQueue
    dead_letters: DeadLetters

    @property
    def protocol(self) -> QueueProtocol:
        return self.queue.protocol

    def on_loop(self, step: Callable[[AsyncQueue], Awaitable[T]]) -> T:
        async def run() -> T:
            client = redis.asyncio.Redis.from_url(self.redis_url)
            try:
                scripts = pipelined_worker_scripts(client, "")
                return await step(AsyncQueue(self.protocol, scripts, client))
            finally:
                await client.aclose()

        return asyncio.run(run())

    def settle(self, *calls: Any) -> list[Any]:
        async def run_all(queue: AsyncQueue) -> list[Any]:
            return list(await asyncio.gather(*(queue.run(call) for call in calls)))

        return self.on_loop(run_all)

    def hold(self, *raws: bytes, worker_id: str = WORKER) -> None:
        self.client.lpush(self.keys.processing(worker_id), *raws)

    def start(self, *job_ids: str, token: str = "") -> list[int]:
        starts = [JobStart(job_id, raw_job(job_id), "echo", 3, None) for job_id in job_ids]
        call = self.protocol.start(starts, token or start_token("t-"), None)
        return [found.attempt for found in started(self.queue.run(call))]

    def start_limited(self, links: JobLinks, *job_ids: str) -> list[Started]:
        starts = [JobStart(job_id, raw_job(job_id), "echo", 3, None, links) for job_id in job_ids]
        return started(self.queue.run(self.protocol.start(starts, start_token("t-"), None)))

    def hand_on_permit(self, settle: Callable[[str, JobLinks], Any]) -> None:
        """A job holding its task's only permit ends (`settle`): the permit goes to the job
        blocked waiting for it, which goes to the ready list."""
        self.client.delete(self.keys.permits("one"), self.keys.blocked("one"), self.keys.ready)
        self.hold(raw_job("holder"), raw_job("waiter"))
        found = self.start_limited(ONE_AT_A_TIME, "holder", "waiter")
        assert [f.over_limit for f in found] == [False, True]
        self.settle(settle("holder", ONE_AT_A_TIME))
        assert self.client.zcard(self.keys.permits("one")) == 0
        assert self.client.lindex(self.keys.ready, -1) == raw_job("waiter")  # taken next
        self.client.delete(self.keys.job("holder"), self.keys.job("waiter"), self.keys.ready)
        self.client.delete(self.keys.delayed, self.keys.dead)

    def field(self, job_id: str, name: str) -> bytes | None:
        return self.client.hget(self.keys.job(job_id), name)


def raw_job(job_id: str) -> bytes:
    return orjson.dumps({"task": "echo", "id": job_id, "args": []})


def drive_take(bench: Bench) -> None:
    bench.client.lpush(bench.keys.ready, raw_job("ready"))
    bench.client.zadd(bench.keys.delayed, {raw_job("due"): 1_000, raw_job("later"): 9e12})
    taken = bench.queue.take(5)
    assert (taken.jobs, taken.next_due_ms) == ([raw_job("due"), raw_job("ready")], 9e12)
    assert bench.queue.take(0).jobs == []


def drive_start(bench: Bench) -> None:
    bench.hold(raw_job("a"), raw_job("b"))
    token = start_token("t-")
    enqueued = JobStart("b", raw_job("b"), "echo", 3, 1.5)
    starts = [JobStart("a", raw_job("a"), "echo", 3, None), enqueued]

    def start() -> list[int]:
        reply = bench.queue.run(bench.protocol.start(starts, token, None))
        return [found.attempt for found in started(reply)]

    assert start() == [1, 1]  # counted
    assert start() == [1, 1]  # sent again: its own count read
    bench.client.lrem(bench.keys.processing(WORKER), 1, raw_job("a"))
    assert start() == [0, 1]  # no longer held: taken back
    assert bench.field("a", "attempts") == b"0"
    assert bench.start("never-held") == [0]
    bench.hold(raw_job("cancelled"), raw_job("asked"))
    bench.client.hset(bench.keys.job("cancelled"), "status", "cancelled")
    bench.client.hset(bench.keys.job("asked"), mapping={"status": "queued", "cancel_requested": 1})
    assert bench.start("cancelled", "asked") == [0, 0]  # not started, and dropped
    assert bench.field("asked", "status") == b"cancelled"
    assert bench.client.lpos(bench.keys.processing(WORKER), raw_job("asked")) is None
    # A job cancelled this way that others wait for: marked to be settled.
    bench.hold(raw_job("waited"))
    bench.client.hset(bench.keys.job("waited"), mapping={"cancel_requested": 1, "dependents": 1})
    assert bench.start("waited") == [0]
    assert bench.client.smembers(bench.keys.settling) == {b"waited"}
    # A task run one at a time across workers: the second job waits for the permit.
    bench.hold(raw_job("l1"), raw_job("l2"))
    found = bench.start_limited(ONE_AT_A_TIME, "l1", "l2")
    assert [(f.attempt, f.over_limit) for f in found] == [(1, False), (0, True)]
    assert bench.client.zscore(bench.keys.permits("one"), "l1") is not None
    assert bench.client.lrange(bench.keys.blocked("one"), 0, -1) == [raw_job("l2")]
    assert bench.client.hget(bench.keys.limited, "one") == b"1"
    # A task of one start a minute: the second reserves the next minute, delayed till then.
    bench.hold(raw_job("r1"), raw_job("r2"))
    found = bench.start_limited(A_MINUTE_APART, "r1", "r2")
    assert [(f.attempt, f.over_limit) for f in found] == [(1, False), (0, True)]
    assert found[1].due_ms - time.time() * 1000 > 59_000
    assert (
        found[1].due_ms - 1
        < bench.client.zscore(bench.keys.delayed, raw_job("r2"))
        <= found[1].due_ms
    )
    assert bench.field("r2", "waiting_for") == b"rate"
    # Two starts a minute, both made within the last one: the next waits for the older to
    # leave the minute, however free the handed-out times are.
    now_ms = time.time() * 1000
    bench.client.rpush(bench.keys.starts("two"), now_ms - 1_000, now_ms - 50_000)
    bench.hold(raw_job("w1"))
    [found_w1] = bench.start_limited(TWO_A_MINUTE, "w1")
    assert found_w1.over_limit
    assert abs(found_w1.due_ms - (now_ms + 10_000)) < 2_000
    bench.client.delete(bench.keys.starts("two"), bench.keys.rate("two"))
    bench.client.zrem(bench.keys.delayed, raw_job("w1"))
    bench.hold(raw_job("w2"))
    assert bench.start_limited(TWO_A_MINUTE, "w2")[0].attempt == 1
    assert bench.client.llen(bench.keys.starts("two")) == 1  # its start, kept for a minute


def drive_ack(bench: Bench) -> None:
    bench.hold(raw_job("a"), raw_job("b"))
    bench.start("a", "b")
    bench.client.hset(bench.keys.job("a"), "reason", "timeout")  # an earlier failure's
    result = orjson.dumps("ok")
    calls = [bench.protocol.ack(job_id, raw_job(job_id), result, 1) for job_id in ("a", "b")]
    stale = bench.protocol.ack("b", raw_job("b"), result, 7)
    assert bench.settle(*calls, stale) == [1, 1, 0]
    assert bench.field("a", "status") == b"succeeded"
    bench.hold(raw_job("c"))
    bench.start("c")
    bench.client.hset(bench.keys.job("c"), mapping={"cancel_requested": 1, "watched": 1})
    assert bench.settle(bench.protocol.ack("c", raw_job("c"), result, 1)) == [2]
    assert bench.field("c", "status") == b"cancelled"
    assert bench.field("c", "result") is None
    bench.client.set(bench.keys.unique("k"), "waited")
    bench.hold(raw_job("waited"))
    bench.start("waited")
    bench.client.hset(bench.keys.job("waited"), "dependents", 1)
    call = bench.protocol.ack("waited", raw_job("waited"), result, 1, JobLinks(unique="k"))
    assert bench.settle(call) == [1]
    assert bench.client.smembers(bench.keys.settling) == {b"waited"}
    assert not bench.client.exists(bench.keys.unique("k"))
    bench.hand_on_permit(lambda job_id, links: bench.protocol.ack(
        job_id, raw_job(job_id), result, 1, links
    ))  # fmt: skip
    # The last member of a group: counted, and the callback pushed with the outcomes.
    group = bench.keys.group("g1")
    bench.client.hset(group, mapping={
        "size": 1, "left": 1, "placeholder": '"@"', "callback": '{"task":"echo","args":["@"]}',
    })  # fmt: skip
    bench.client.hset(bench.keys.job("m"), mapping={"group_id": "g1", "group_index": 1})
    bench.hold(raw_job("m"))
    bench.start("m")
    assert bench.settle(bench.protocol.ack("m", raw_job("m"), result, 1, JobLinks("g1"))) == [1]
    pushed = orjson.loads(bench.client.lpop(bench.keys.ready))
    assert pushed["args"] == [[{"id": "m", "status": "succeeded", "result": "ok"}]]


def drive_retry(bench: Bench) -> None:
    bench.hold(raw_job("a"))
    bench.start("a")
    call = bench.protocol.retry("a", raw_job("a"), FAILURE, 1, 1_000)
    stale = bench.protocol.retry("a", raw_job("a"), FAILURE, 3, 1_000)
    assert bench.settle(stale, call) == [0, 1]
    assert bench.field("a", "status") == b"retrying"
    bench.hold(raw_job("b"))
    bench.start("b")
    bench.client.hset(bench.keys.job("b"), mapping={"cancel_requested": 1, "dependents": 1})
    assert bench.settle(bench.protocol.retry("b", raw_job("b"), FAILURE, 1, 1_000)) == [2]
    assert bench.client.smembers(bench.keys.settling) == {b"b"}
    bench.hand_on_permit(lambda job_id, links: bench.protocol.retry(
        job_id, raw_job(job_id), FAILURE, 1, 1_000, links
    ))  # fmt: skip


def drive_dead(bench: Bench) -> None:
    bench.hold(raw_job("a"), b"bad input")
    bench.start("a")
    bench.client.hset(bench.keys.job("a"), "dependents", 1)
    entry = b'{"id": "a"}'
    calls = [
        bench.protocol.dead("a", raw_job("a"), FAILURE, 1, entry),
        bench.protocol.dead("bad", b"bad input", FAILURE, None, entry),  # never started
        bench.protocol.dead("gone", raw_job("gone"), FAILURE, 1, entry),
    ]
    assert bench.settle(*calls) == [1, 1, 0]
    assert bench.client.llen(bench.keys.dead) == 2
    assert bench.client.smembers(bench.keys.settling) == {b"a"}
    # A unique member of a group: counted in its group, its unique key let go.
    bench.client.hset(bench.keys.group("g1"), mapping={"size": 2, "left": 2})
    bench.client.hset(bench.keys.job("u"), mapping={"group_id": "g1", "group_index": 1})
    bench.client.set(bench.keys.unique("k"), "u")
    bench.hold(raw_job("u"))
    bench.start("u")
    links = JobLinks(group="g1", unique="k")
    assert bench.settle(bench.protocol.dead("u", raw_job("u"), FAILURE, 1, entry, links)) == [1]
    assert not bench.client.exists(bench.keys.unique("k"))
    assert bench.client.hget(bench.keys.group("g1"), "left") == b"1"
    bench.hand_on_permit(lambda job_id, links: bench.protocol.dead(
        job_id, raw_job(job_id), FAILURE, 1, entry, links
    ))  # fmt: skip


def drive_requeue(bench: Bench) -> None:
    bench.hold(raw_job("a"), raw_job("b"), raw_job("c"), raw_job("c"))
    bench.start("a", "b")  # c has no record
    for job_id, undo_start in (("a", True), ("b", False), ("c", True), ("c", False)):
        call = bench.protocol.requeue(job_id, raw_job(job_id), undo_start=undo_start)
        assert bench.queue.run(call) == 1
    assert bench.queue.run(bench.protocol.requeue("c", raw_job("c"), undo_start=True)) == 0
    assert (bench.field("a", "attempts"), bench.field("b", "attempts")) == (b"0", b"1")
    assert bench.field("b", "status") == b"queued"
    bench.hand_on_permit(lambda job_id, links: bench.protocol.requeue(
        job_id, raw_job(job_id), undo_start=True, links=links
    ))  # fmt: skip


def drive_renew(bench: Bench) -> None:
    permits = bench.keys.permits("one")
    bench.client.zadd(permits, {"a": 1})
    bench.client.pexpire(permits, 500)
    assert bench.queue.run(bench.protocol.renew_permits([("one", "a"), ("one", "gone")])) == 1
    assert bench.client.zscore(permits, "a") > time.time() * 1000 + 5_000
    assert bench.client.zcard(permits) == 1  # an ended job's permit is not given back
    assert bench.client.pttl(permits) > 5_000


def drive_unblock(bench: Bench) -> None:
    bench.client.zadd(bench.keys.permits("one"), {"lost": 1})  # lapsed long ago
    bench.client.lpush(bench.keys.blocked("one"), raw_job("b1"), raw_job("b2"))  # b1 first
    bench.client.hset(bench.keys.limited, "one", 1)
    assert bench.queue.run(bench.protocol.unblock("one")) == 1
    assert bench.client.lrange(bench.keys.ready, 0, -1) == [raw_job("b1")]
    bench.client.zadd(bench.keys.permits("one"), {"b1": 9e12})  # b1 runs
    assert bench.queue.run(bench.protocol.unblock("one")) == 0
    bench.client.delete(bench.keys.permits("one"))
    assert bench.queue.run(bench.protocol.unblock("one")) == 1
    assert not bench.client.exists(bench.keys.limited)  # none blocked: forgotten


def drive_adopt(bench: Bench) -> None:
    bench.hold(b'{"task": "echo"}')
    assert bench.queue.run(bench.protocol.adopt(b'{"task": "echo"}', raw_job("new"))) == 1
    assert bench.queue.held() == [raw_job("new")]


def drive_recover(bench: Bench) -> None:
    bench.hold(raw_job("a"), worker_id="w-live")
    bench.hold(raw_job("b"), raw_job("c"), worker_id="w-lost")
    bench.client.set(bench.keys.worker("w-live"), b"{}", px=60_000)
    assert bench.on_loop(lambda queue: queue.recover("w-live")).alive
    assert bench.on_loop(lambda queue: queue.recover("w-lost")).requeued == 2


def drive_promote(bench: Bench) -> None:
    bench.client.zadd(bench.keys.delayed, {raw_job("due"): 1_000, raw_job("later"): 9e12})
    assert bench.on_loop(lambda queue: queue.promote()) == 9e12
    assert bench.client.lrange(bench.keys.ready, 0, -1) == [raw_job("due")]


def drive_history(bench: Bench) -> None:
    history = bench.keys.history
    bench.client.hset(history, mapping={"100:ok": 4, "160:failed": 1, "161:ok": 2})
    call = bench.protocol.add_history({"161:ok": 3, "161:failed": 1}, None)
    assert bench.queue.run(call) == 0  # nothing deleted: not asked to
    assert bench.client.hget(history, "161:ok") == b"5"
    assert bench.queue.run(bench.protocol.add_history({"162:ok": 1}, 161)) == 2
    assert sorted(bench.client.hkeys(history)) == [b"161:failed", b"161:ok", b"162:ok"]
    assert bench.client.ttl(history) > 3600


def drive_revive(bench: Bench) -> None:
    entry = orjson.dumps({"id": "a", "raw": raw_job("a").decode(), "failed_at": 1.0})
    bench.client.lpush(bench.keys.dead, entry)
    bench.client.hset(bench.keys.job("a"), mapping={"status": "dead", "attempts": 3})
    assert bench.dead_letters.retry(None) == ["a"]
    assert bench.client.lrange(bench.keys.ready, 0, -1) == [raw_job("a")]
    assert bench.field("a", "attempts") == b"0"


def drive_purge(bench: Bench) -> None:
    old, new = orjson.dumps({"id": "old", "failed_at": 1.0}), orjson.dumps({"failed_at": 9.0})
    bench.client.lpush(bench.keys.dead, old, new)
    assert bench.dead_letters.purge(5.0, now=10.0) == 1
    assert bench.client.lrange(bench.keys.dead, 0, -1) == [new]


def drive_progress(bench: Bench) -> None:
    bench.hold(raw_job("a"))
    bench.start("a")
    bench.client.hset(bench.keys.job("a"), "watched", 1)
    assert bench.queue.run(bench.protocol.progress("a", 1, 0.5, "half", 1.0)) == 1
    assert bench.field("a", "progress") == b"0.5"
    assert bench.queue.run(bench.protocol.progress("a", 2, 0.6, "", 1.0)) == 0  # stale attempt


def drive_watch(bench: Bench) -> None:
    bench.client.hset(bench.keys.job("done"), mapping={"status": "succeeded", "result": "1"})
    with Producer(client=bench.client, queue=bench.keys.queue) as producer:
        assert producer.wait(["done"], timeout=5)["done"]["result"] == 1
        producer.job("open")
        assert bench.field("open", "watched") == b"1"
        assert bench.client.ttl(bench.keys.job("open")) > 0


def drive_cancel(bench: Bench) -> None:
    with Producer(client=bench.client, queue=bench.keys.queue) as producer:
        bench.client.lpush(bench.keys.ready, raw_job("queued"))
        assert producer.cancel("queued").outcome is CancelOutcome.CANCELLED
        assert bench.client.llen(bench.keys.ready) == 0
        assert producer.cancel("queued").outcome is CancelOutcome.FINAL
        bench.hold(raw_job("running"))
        bench.start("running")
        assert producer.cancel("running").outcome is CancelOutcome.REQUESTED
        assert bench.field("running", "cancel_requested") is not None
        assert producer.cancel("nobody").outcome is CancelOutcome.UNKNOWN
        group = producer.group([call("echo", 1)], then=call("echo", "done"))
        [member] = group.members
        assert producer.cancel(member.id).outcome is CancelOutcome.CANCELLED
        assert bench.client.hget(bench.keys.group(group.id), "left") == b"0"
        # Cancelling a job others wait for cancels them too (marked, then settled).
        bench.client.lpush(bench.keys.ready, raw_job("first"))
        producer.push("echo", 1, _id="second", _after=["first"])
        assert producer.cancel("first").outcome is CancelOutcome.CANCELLED
        assert bench.field("second", "status") == b"cancelled"


def drive_tick(bench: Bench) -> None:
    def tick(now: float, due: float, following: float) -> list[Any]:
        call = bench.protocol.tick("s", "spec", now, due, following, 0.5, False, b"{}", "j")
        return [text if isinstance(text, int) else text.decode() for text in bench.queue.run(call)]

    assert tick(100.2, 100, 101) == ["armed", "101", 0]
    assert tick(100.5, 100, 101) == ["waiting", "101", 0]
    assert tick(101.1, 101, 102) == ["pushed", "102", 0]
    assert bench.client.llen(bench.keys.ready) == 1
    assert tick(105.9, 105, 106) == ["skipped", "106", 1]  # late: missed


def drive_push_unique(bench: Bench) -> None:
    with Producer(client=bench.client, queue=bench.keys.queue) as producer:
        first = producer.push("echo", 1, _unique="k", _unique_ttl=5)
        assert producer.push("echo", 2, _unique="k") == first
        assert producer.push("echo", 3, _unique="other", _delay=60) != first
        assert bench.field(first, "unique") == b"k"
        assert producer.cancel(first).outcome is CancelOutcome.CANCELLED
        assert bench.client.ttl(bench.keys.unique("k")) > 0  # kept 5 s more


def drive_hold(bench: Bench) -> None:
    bench.client.hset(bench.keys.job("done"), "status", "succeeded")
    bench.client.hset(bench.keys.job("gone"), "status", "dead")
    bench.client.lpush(bench.keys.ready, raw_job("queued"))  # no record: found in the list
    with Producer(client=bench.client, queue=bench.keys.queue) as producer:
        producer.push("echo", 1, _id="now", _after=["done"])
        assert bench.client.llen(bench.keys.ready) == 2  # pushed at once
        producer.push("echo", 2, _id="held", _after=["done", "queued"], _delay=5)
        assert bench.field("held", "after_left") == b"1"
        assert bench.client.lrange(bench.keys.dependents("queued"), 0, -1) == [b"held"]
        producer.push("echo", 3, _id="never", _after=["gone"])
        assert bench.field("never", "status") == b"cancelled"
        # A member of a group: held in the group's transaction, counted if cancelled.
        group = producer.group(
            [call("echo", 4, _after=["gone"]), call("echo", 5, _after=["queued"])],
            then=call("echo"),
        )
        assert bench.client.hget(bench.keys.group(group.id), "left") == b"1"


def drive_settle(bench: Bench) -> None:
    bench.client.hset(bench.keys.job("root"), "status", "running")
    with Producer(client=bench.client, queue=bench.keys.queue) as producer:
        producer.push("echo", 1, _id="a", _after=["root"])
        group = producer.group([call("echo", 2, _id="m", _after=["root"])], then=call("echo"))
        producer.push("echo", 3, _id="b", _after=["a"])
        bench.client.hset(bench.keys.job("root"), "status", "dead")
        bench.client.sadd(bench.keys.settling, "root")  # as dead.lua marks it
        assert producer.settle_dependents() == 2  # root, then a (cancelled by it)
        assert bench.field("a", "status") == b"cancelled"
        assert bench.field("b", "error") == b"dependency a ended cancelled"
        assert bench.client.hget(bench.keys.group(group.id), "left") == b"0"
        bench.client.hset(bench.keys.job("ok"), "status", "running")
        producer.push("echo", 5, _id="d", _after=["ok"])
        bench.client.hset(bench.keys.job("ok"), "status", "succeeded")
        bench.client.sadd(bench.keys.settling, "ok")
        assert producer.settle_dependents() == 1
        assert bench.client.zcard(bench.keys.delayed) == 0
        assert orjson.loads(bench.client.lpop(bench.keys.ready))["id"] == "d"  # released
        assert bench.client.scard(bench.keys.settling) == 0


DRIVERS: dict[str, Callable[[Bench], None]] = {
    "take": drive_take,
    "start": drive_start,
    "ack": drive_ack,
    "retry": drive_retry,
    "dead": drive_dead,
    "requeue": drive_requeue,
    "adopt": drive_adopt,
    "recover": drive_recover,
    "promote": drive_promote,
    "history": drive_history,
    "revive": drive_revive,
    "purge": drive_purge,
    "progress": drive_progress,
    "watch": drive_watch,
    "cancel": drive_cancel,
    "hold": drive_hold,
    "tick": drive_tick,
    "push_unique": drive_push_unique,
    "settle": drive_settle,
    "renew": drive_renew,
    "unblock": drive_unblock,
}


@dataclass(frozen=True)
class CheckedLibraries:
    worker: KeyCheckedLibrary
    producer: KeyCheckedLibrary

    def sha(self, script: str) -> str:
        library = self.worker if script in self.worker.names else self.producer
        return library.shas[script]


@pytest.fixture
def checked(monkeypatch: pytest.MonkeyPatch) -> CheckedLibraries:
    """The worker's and the producer's script libraries, key-checked, in place of the real
    ones for the queues and dead-letter tools built during the test."""
    mark = f"key check {uuid.uuid4().hex}"
    libraries = CheckedLibraries(
        key_checked(WORKER_SCRIPTS, mark), key_checked(PRODUCER_SCRIPTS, mark)
    )
    monkeypatch.setattr(worker.jobs.protocol, "WORKER_SCRIPTS", libraries.worker)
    monkeypatch.setattr(worker.jobs.queues, "WORKER_SCRIPTS", libraries.worker)
    modules = (
        producer.dead_letters,
        producer.client,
        producer.completions_thread,
        producer.dependencies,
        producer.batches,
    )
    for module in modules:
        monkeypatch.setattr(module, "PRODUCER_SCRIPTS", libraries.producer)
    return libraries


def test_every_script_has_a_driver() -> None:
    assert set(DRIVERS) == {*WORKER_SCRIPTS.names, *PRODUCER_SCRIPTS.names}


@pytest.mark.parametrize("script", DRIVERS)
def test_every_key_a_script_touches_reaches_it_through_keys(
    checked: CheckedLibraries,
    redis_client: redis.Redis,
    redis_url: str,
    keys: QueueKeys,
    script: str,
) -> None:
    sha = checked.sha(script)
    assert redis_client.script_exists(sha) == [False]
    bench = Bench(
        redis_client,
        redis_url,
        keys,
        SyncQueue(QueueProtocol(keys, WORKER, TTL), redis_client),
        DeadLetters(redis_client, keys),
    )
    DRIVERS[script](bench)  # a key not in KEYS fails the script, and so the driver
    # The key-checked text of this script is what ran (its SHA is unique to this test).
    assert redis_client.script_exists(sha) == [True]


# --- statuses -----------------------------------------------------------------------------


def lua_files() -> list[Path]:
    return sorted(path for folder in LUA_FOLDERS for path in folder.rglob("*.lua"))


def lua_code(path: Path) -> str:
    """The file without its comments: a status named in prose is not a literal."""
    return "\n".join(line.split("--", 1)[0] for line in path.read_text("utf-8").splitlines())


def relative(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


STATUS_LITERAL = re.compile(
    r"""(['"])({})\1""".format("|".join(re.escape(status.value) for status in JobStatus))
)


@pytest.mark.parametrize("path", lua_files(), ids=relative)
def test_no_lua_file_spells_a_status_literal(path: Path) -> None:
    found = [match[0] for match in STATUS_LITERAL.finditer(lua_code(path))]
    assert found == [], f"{relative(path)} spells {found}: use STATUS.<name>"


def test_every_status_a_script_names_is_in_the_status_table() -> None:
    names = {status.name.lower() for status in JobStatus}
    used = {
        (relative(path), name)
        for path in lua_files()
        for name in re.findall(r"\bSTATUS\.(\w+)", lua_code(path))
    }
    assert used  # the scripts do name statuses
    assert {(path, name) for path, name in used if name not in names} == set()


def test_the_status_table_matches_job_status(redis_client: redis.Redis) -> None:
    table = redis_client.eval(f"{lua_status_table()}return cjson.encode(STATUS)", 0)
    assert orjson.loads(table) == {status.name.lower(): status.value for status in JobStatus}


@pytest.mark.parametrize("folder", LIBRARIES, ids=str)
def test_every_script_of_a_library_starts_with_the_status_table(folder: str) -> None:
    library = LIBRARIES[folder]
    assert library.sources
    assert all(source.startswith(lua_status_table()) for source in library.sources.values())


@pytest.mark.parametrize("folder", LIBRARIES, ids=str)
def test_every_lua_file_belongs_to_its_library(folder: str) -> None:
    """So driving each library's scripts drives every file of its folder."""
    library = LIBRARIES[folder]
    scripts = {path.stem for path in (REPO_ROOT / folder).glob("*.lua")}
    libs = {path.stem for path in (REPO_ROOT / folder / "lib").glob("*.lua")}
    assert scripts == set(library.names)
    # A lib may serve another library's scripts too ("package:name").
    folders = {other.package: name for name, other in LIBRARIES.items()}
    used = set()
    for other_folder, other in LIBRARIES.items():
        for lib in (lib for names in other.uses.values() for lib in names):
            package, _, name = lib.rpartition(":")
            if (folders[package] if package else other_folder) == folder:
                used.add(name)
    assert libs == used
