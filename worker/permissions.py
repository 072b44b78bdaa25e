"""Whether the Redis user may run every command a worker sends (docs/operations.md#acl-user).

A worker checks at its start, with `redis.acl_check_cmd` (Redis 7 and later), each command
its scripts and its clients send, on keys and channels of its queues: a permission missing
stops the start with one line naming the commands refused, rather than a failure on the first
job. Redis 6.2 cannot say; there a refusal stops the worker when it happens (exit 2,
`redis.permission_denied`). Commands a worker can do without (CONFIG GET to warn about
eviction, CLIENT ID and CLIENT UNBLOCK to end its blocking pop at once on shutdown) are not
required.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis
import structlog

from producer.errors import CoroqError
from producer.keys import QueueKeys, done_channels_pattern, workers_key

log = structlog.get_logger()


class RedisPermissionsMissing(CoroqError):
    """The Redis user may not run commands the worker needs: a setting to fix (exit 2)."""

    exit_code = 2


# Each command with arguments of the right shape: {k} a key of the queue, {c} a channel of
# it, {w} the set of workers.
REQUIRED = (
    # inside the scripts (worker/jobs/lua, producer/lua)
    "HSET {k} f v", "HGET {k} f", "HMGET {k} f", "HDEL {k} f", "HINCRBY {k} f 1", "HGETALL {k}",
    "EXPIRE {k} 1", "PEXPIRE {k} 1", "TTL {k}", "EXISTS {k}", "GET {k}", "SET {k} v", "DEL {k}",
    "LPUSH {k} v", "RPUSH {k} v", "RPOP {k}", "LREM {k} 1 v", "LLEN {k}", "LINDEX {k} 0",
    "LTRIM {k} 0 1", "LRANGE {k} 0 1", "LPOS {k} v", "LMOVE {k} {k} RIGHT LEFT",
    "ZADD {k} 1 v", "ZREM {k} v", "ZRANGE {k} 0 0", "ZRANGEBYSCORE {k} 0 1", "ZCARD {k}",
    "ZSCORE {k} v", "ZREMRANGEBYSCORE {k} 0 1", "SADD {k} v", "SREM {k} v",
    "SISMEMBER {k} v", "PUBLISH {c} m", "TIME",
    # from the worker's clients
    "EVALSHA 0000000000000000000000000000000000000000 1 {k}", "SCRIPT LOAD x",
    "BLMOVE {k} {k} RIGHT LEFT 0", "MGET {k}", "HKEYS {k}", "SMEMBERS {w}", "SADD {w} v",
    "SREM {w} v", "SCAN 0", "SUBSCRIBE {c}", "PING",
)  # fmt: skip

# Asks for each command in ARGV (words split on spaces) whether this user may run it.
_PROBE = """
local refused = {}
for _, spec in ipairs(ARGV) do
  local words = {}
  for word in string.gmatch(spec, '%S+') do
    words[#words + 1] = word
  end
  local ok, allowed = pcall(redis.acl_check_cmd, unpack(words))
  if ok and not allowed then
    refused[#refused + 1] = spec
  end
end
return refused
"""


def commands_for(queues: Iterable[QueueKeys]) -> list[str]:
    """The required commands, on keys and channels of each queue, and the pattern the
    producers' completion listener subscribes to."""
    specs: list[str] = []
    for keys in queues:
        for spec in REQUIRED:
            specs.append(
                spec.replace("{k}", keys.ready)
                .replace("{c}", keys.done_channel)
                .replace("{w}", workers_key(keys.prefix))
            )
    specs.append(f"PSUBSCRIBE {done_channels_pattern(next(iter(queues)).prefix)}")
    return specs


async def refused_commands(client: redis.asyncio.Redis, queues: list[QueueKeys]) -> list[str]:
    """The commands this user may not run ("COMMAND key..." as probed), without the keys; an
    empty list also when Redis cannot tell (6.2: no `redis.acl_check_cmd`)."""
    try:
        refused = await client.eval(_PROBE, 0, *commands_for(queues))
    except redis.ResponseError as exc:
        if "acl_check_cmd" in str(exc) or "nil value" in str(exc):
            return []  # Redis 6.2
        if "NOPERM" in str(exc) or "no permissions" in str(exc):
            return ["EVAL"]
        raise
    names = []
    for spec in refused:
        text = spec.decode() if isinstance(spec, bytes) else str(spec)
        words = text.split()
        name = " ".join(words[:2]) if words[0] in ("SCRIPT", "CLIENT", "CONFIG") else words[0]
        if name not in names:
            names.append(name)
    return names


async def require_permissions(client: redis.asyncio.Redis, queues: list[QueueKeys]) -> None:
    """Stop the start, naming them, when the Redis user may not run commands we need."""
    try:
        refused = await refused_commands(client, queues)
    except redis.RedisError as exc:  # unreachable now: a refusal shows when it happens
        log.debug("worker.permissions_unchecked", error=str(exc))
        return
    if refused:
        raise RedisPermissionsMissing(
            f"the Redis user may not run {', '.join(refused)} on coroq's keys and channels; "
            "grant them (docs/operations.md#acl-user)"
        )
