-- Schedule a failed job for another attempt: drop it from the processing list, add it to the
-- delayed set at its due time, and record the failure, in one step (lib/fence.lua).
-- KEYS[1]  processing list       coroq:{Q}:processing:<worker-id>
-- KEYS[2]  delayed set           coroq:{Q}:delayed
-- KEYS[3]  job record hash       coroq:{Q}:job:<id>
-- ARGV[1]  the job's raw bytes, exactly as taken from the ready list
-- ARGV[2]  due time (epoch milliseconds)
-- ARGV[3]  reason (machine-readable)
-- ARGV[4]  error message
-- ARGV[5]  traceback ('' when none)
-- ARGV[6]  record TTL (seconds)
-- ARGV[7]  the attempt that failed
-- KEYS[4]  settling set          coroq:{Q}:settling (producer/lua/lib/after.lua)
-- KEYS[5], KEYS[6]  for a member of a group: the group's hash and the ready list (counted
--          in its group only if cancelled instead: producer/lua/lib/group.lua)
-- A job whose cancel was requested while it ran is recorded `cancelled` instead, and is not
-- tried again (lib/cancel.lua); the jobs held for it are marked to be settled (producer/lua/lib/after.lua).
-- Returns 1 when scheduled (now, or by this same call before its reply was lost), 2 when
-- recorded as cancelled instead, 0 when the job was no longer held by this attempt.
local seen = redis.call('HMGET', KEYS[3], 'attempts', 'status', 'watched', 'cancel_requested',
  'dependents')
local outcome, status = outcome_of(seen[4], STATUS.retrying)
local held = release_held(KEYS[1], ARGV[1], seen[1], seen[2], ARGV[7], status, false)
if held == 'settled' then
  return outcome
elseif not held then
  return 0
end
if outcome == 2 then
  mark_cancelled(KEYS[3], tostring(tonumber(redis.call('TIME')[1])), ARGV[6])
  if KEYS[5] then
    count_in_group(KEYS[3], KEYS[5], KEYS[6],
      member_outcome(KEYS[3], STATUS.cancelled, nil, 'cancelled by request'))
  end
  if seen[3] then
    notify_done(KEYS[3])
  end
  if seen[5] then
    mark_settling(KEYS[3], KEYS[4])
  end
  return 2
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[3], 'status', STATUS.retrying, 'reason', ARGV[3], 'error', ARGV[4],
  'traceback', ARGV[5], 'next_attempt_at', tonumber(ARGV[2]) / 1000)
redis.call('EXPIRE', KEYS[3], ARGV[6])
return 1
