-- Cancel a job (docs/futures.md#cancel), by its record:
-- - final already (succeeded, dead, cancelled): nothing changes;
-- - running: `cancel_requested` is set and the id published on the queue's cancel channel;
--   the worker running it cancels it and records `cancelled` (worker/jobs/lua/lib/cancel.lua);
-- - queued or retrying: recorded `cancelled` now; its entry, still in the ready list or the
--   delayed set, is dropped by the first worker that takes it, unstarted; a job held for the
--   jobs it waits for (`held`, lib/after.lua) is dropped from its record;
-- - no status (never started: only a waiting producer's mark, or no record): the caller found
--   its bytes in the ready list or the delayed set (ARGV[3]); they are removed here, and the
--   job recorded `cancelled`. Not found there: unknown.
-- KEYS[1]  job record hash   coroq:{Q}:job:<id>
-- KEYS[2]  ready list        coroq:{Q}:ready
-- KEYS[3]  delayed set       coroq:{Q}:delayed
-- ARGV[1]  now (epoch seconds)
-- ARGV[2]  record TTL (seconds)
-- ARGV[3]  the job's bytes as found in the ready list or the delayed set ('' when not found)
-- ARGV[4]  the job id
-- ARGV[5]  the queue's cancel channel
-- KEYS[4]  settling set      coroq:{Q}:settling (lib/after.lua)
-- KEYS[5...]  as ARGV[6] says: with 'g', for a member of a group (its record's `group_id`),
--          the group's hash, in which it is counted when cancelled here (lib/group.lua); then
--          with 'u', the job's unique key (its record's `unique`), let go (lib/unique.lua)
-- ARGV[6]  'g', 'u', both or ''
-- Jobs held for this one are marked to be settled (cancelled with it: lib/after.lua).
-- Returns {what was done, the status it had, 1 when jobs wait for it (to settle), else 0}:
-- 'final', 'requested', 'cancelled', 'unknown', or 'moved' (its bytes were no longer where
-- they were found: it was taken meanwhile).
local at, group, unique = 5, nil, nil
if string.find(ARGV[6], 'g', 1, true) then
  group, at = KEYS[at], at + 1
end
if string.find(ARGV[6], 'u', 1, true) then
  unique = KEYS[at]
end
local seen = redis.call('HMGET', KEYS[1], 'status', 'watched', 'dependents')
local status = seen[1]
if status == STATUS.succeeded or status == STATUS.dead or status == STATUS.cancelled then
  return {'final', status}
end
if status == STATUS.running then
  redis.call('HSET', KEYS[1], 'cancel_requested', ARGV[1])
  redis.call('PUBLISH', ARGV[5], ARGV[4])
  return {'requested', status}
end
if not status then
  if ARGV[3] == '' then
    return {'unknown', ''}
  end
  local removed = redis.call('LREM', KEYS[2], 1, ARGV[3]) + redis.call('ZREM', KEYS[3], ARGV[3])
  if removed == 0 then
    return {'moved', ''}
  end
end
redis.call('HSET', KEYS[1], 'status', STATUS.cancelled, 'reason', 'by_request',
  'error', 'cancelled by request', 'finished_at', ARGV[1])
redis.call('HDEL', KEYS[1], 'next_attempt_at', 'held', 'held_to')
redis.call('EXPIRE', KEYS[1], ARGV[2])
after_final({record = KEYS[1], status = STATUS.cancelled, error = 'cancelled by request',
  group = group, ready = KEYS[2], unique = unique, watched = seen[2], dependents = seen[3],
  settling = KEYS[4]})
return {STATUS.cancelled, status or '', seen[3] and 1 or 0}
