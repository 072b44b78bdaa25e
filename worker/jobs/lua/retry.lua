-- Schedule a failed job for another attempt: drop it from the processing list, add it to the
-- delayed set at its due time, and record the failure, in one step (lib/fence.lua).
-- KEYS[1]  processing list       coroq:{Q}:processing:<worker-id>
-- KEYS[2]  delayed set           coroq:{Q}:delayed
-- KEYS[3]  settling set          coroq:{Q}:settling (producer/lua/lib/after.lua)
-- KEYS[4]  job record hash       coroq:{Q}:job:<id>
--          then, as ARGV[8] says (producer/lua/lib/group.lua, `job_keys`): for a member of a
--          group, the group's hash and the ready list; for a unique job, its unique key; for
--          a job holding a permit, its limiter's keys (lib/limits.lua): it waits without it
-- ARGV[1]  the job's raw bytes, exactly as taken from the ready list
-- ARGV[2]  due time (epoch milliseconds)
-- ARGV[3]  reason (machine-readable)
-- ARGV[4]  error message
-- ARGV[5]  traceback ('' when none)
-- ARGV[6]  record TTL (seconds)
-- ARGV[7]  the attempt that failed
-- ARGV[8]  which keys follow the record: 'g' (group), 'u' (unique key), 'c' (limiter)
-- A job whose cancel was requested while it ran is recorded `cancelled` instead, and is not
-- tried again (lib/cancel.lua), and the rest follows (producer/lua/lib/final.lua). A job to
-- be tried again keeps its group, its unique key and the jobs held for it as they are.
-- Returns 1 when scheduled (now, or by this same call before its reply was lost), 2 when
-- recorded as cancelled instead, 0 when the job was no longer held by this attempt.
local record, group, ready, unique, at = job_keys(4, ARGV[8])
local limit = limit_keys(at, ARGV[8])
local seen = redis.call('HMGET', record, 'attempts', 'status', 'watched', 'cancel_requested',
  'dependents')
local outcome, status = outcome_of(seen[4], STATUS.retrying)
local held = release_held(KEYS[1], ARGV[1], seen[1], seen[2], ARGV[7], status, false)
if held == 'settled' then
  return outcome
elseif not held then
  return 0
end
release_permit(limit, record)
if outcome == 2 then
  mark_cancelled(record, tostring(tonumber(redis.call('TIME')[1])), ARGV[6])
  after_final({record = record, status = STATUS.cancelled, error = 'cancelled by request',
    group = group, ready = ready, unique = unique, watched = seen[3], dependents = seen[5],
    settling = KEYS[3]})
  return 2
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('HSET', record, 'status', STATUS.retrying, 'reason', ARGV[3], 'error', ARGV[4],
  'traceback', ARGV[5], 'next_attempt_at', tonumber(ARGV[2]) / 1000)
redis.call('EXPIRE', record, ARGV[6])
return 1
