-- Limits across workers (docs/scheduling.md#rate-limits-and-global-concurrency), kept per
-- limiter: a task, or a task and one value of its `limit_key` argument.
--   rate     coroq:{Q}:rate:<limiter>     the next free start time it hands out (epoch ms).
--            A job over the rate reserves that time, in its record's `rate_at`, and waits for
--            it in the delayed set: a backlog is spread out evenly once, never taken and put
--            back again and again. Times are handed out a little (SLACK) further apart than
--            the rate allows, so that starts a little late do not crowd the ones after them.
--   starts   coroq:{Q}:starts:<limiter>   its latest starts (epoch ms, newest first, as many
--            as the rate allows per period): the guarantee. A job starts only if fewer than
--            that many started within the period before now; else it waits, delayed, for
--            the oldest of them to leave the period.
--   permits  coroq:{Q}:permits:<limiter>  the ids of its running jobs, each scored with the
--            end of its lease; the heartbeat of the worker running it renews it (renew.lua),
--            so the permits of a lost worker lapse with its liveness, as its jobs come back.
--   blocked  coroq:{Q}:blocked:<limiter>  its jobs waiting for a permit, the oldest at the
--            right. A job that ends hands its permit on to the oldest (`release_permit`); the
--            workers' sweep (unblock.lua) moves those whose permits lapsed.
--   limited  coroq:{Q}:limited            limiter -> its global concurrency, for each limiter
--            with blocked jobs (what the sweep looks at).
-- A job over a limit counts no attempt and holds no slot while it waits.

local function server_ms()
  local now = redis.call('TIME')
  return tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
end

-- A rate's starts are handed out this much further apart than it allows (see `rate` above).
local SLACK = 0.02

-- The keys of a job's limiter from KEYS[at], as `flag` says: 'r' its rate and starts keys;
-- 'c' its permits
-- and blocked keys, the ready list and the queue's limited hash. Returns them (a table) and
-- the index after them.
local function limit_keys(at, flag)
  local limit = {}
  if string.find(flag, 'r', 1, true) then
    limit.rate, limit.starts, at = KEYS[at], KEYS[at + 1], at + 2
  end
  if string.find(flag, 'c', 1, true) then
    limit.permits, limit.blocked, limit.ready, limit.limited =
      KEYS[at], KEYS[at + 1], KEYS[at + 2], KEYS[at + 3]
    at = at + 4
  end
  return limit, at
end

local function id_of(record)
  return string.match(record, '^.-}:job:(.+)$')
end

local function limiter_of(blocked)
  return string.match(blocked, '^.-}:blocked:(.+)$')
end

-- Whether the job held as `raw` in `job.processing` may start `now` (epoch ms, the time its
-- start is recorded with, to the microsecond). When it may, its permit is
-- taken and 0 returned. Otherwise it leaves the processing list, unstarted: -1 when it waits
-- in the blocked list for a permit, or the time (epoch ms) it waits for in `job.delayed`.
-- `job` holds: record, raw, processing, delayed, count and period (ms) of its rate (or nil),
-- concurrency (or nil), lease (ms).
local function admit(limit, job, now)
  local id = id_of(job.record)
  if limit.permits then
    redis.call('ZREMRANGEBYSCORE', limit.permits, '-inf', now)
    if not redis.call('ZSCORE', limit.permits, id)
        and redis.call('ZCARD', limit.permits) >= job.concurrency then
      redis.call('LREM', job.processing, 1, job.raw)
      redis.call('LPUSH', limit.blocked, job.raw)
      redis.call('HSET', limit.limited, limiter_of(limit.blocked), job.concurrency)
      redis.call('HSET', job.record, 'waiting_for', 'concurrency')
      return -1
    end
  end
  if limit.rate then
    local at = tonumber(redis.call('HGET', job.record, 'rate_at') or '')
    if at == nil then
      at = math.max(tonumber(redis.call('GET', limit.rate) or '0'), now)
      local following = at + job.period / job.count * (1 + SLACK)
      redis.call('SET', limit.rate, string.format('%.3f', following), 'PX',
        math.ceil(following - now) + 1)
    end
    if at <= now then
      -- As many starts within the period before now as the rate allows: not before the
      -- oldest of them has left it.
      local oldest = tonumber(redis.call('LINDEX', limit.starts, job.count - 1) or '')
      if oldest and oldest > now - job.period then
        at = oldest + job.period
      end
    end
    if at > now then  -- it waits for its time, delayed
      redis.call('LREM', job.processing, 1, job.raw)
      redis.call('ZADD', job.delayed, at, job.raw)
      redis.call('HSET', job.record, 'rate_at', string.format('%.3f', at), 'waiting_for', 'rate')
      return math.ceil(at)
    end
  end
  if limit.permits then
    redis.call('ZADD', limit.permits, now + job.lease, id)
    redis.call('PEXPIRE', limit.permits, job.lease)
  end
  if limit.rate then
    redis.call('LPUSH', limit.starts, string.format('%.3f', now))
    redis.call('LTRIM', limit.starts, 0, job.count - 1)
    redis.call('PEXPIRE', limit.starts, math.ceil(job.period))
  end
  redis.call('HDEL', job.record, 'rate_at', 'waiting_for')
  return 0
end

-- A job that held a permit has ended its attempt (or went back unfinished): the permit goes
-- to the oldest blocked job of the limiter, which goes to the consuming end of the ready list.
local function release_permit(limit, record)
  if limit.permits and redis.call('ZREM', limit.permits, id_of(record)) == 1 then
    local waiting = redis.call('RPOP', limit.blocked)
    if waiting then
      redis.call('RPUSH', limit.ready, waiting)
      if redis.call('LLEN', limit.blocked) == 0 then
        redis.call('HDEL', limit.limited, limiter_of(limit.blocked))
      end
    end
  end
end
