-- Acknowledge jobs that succeeded: record each one's result and drop it from the processing
-- list, in one step (lib/fence.lua: only the attempt running it, while this worker holds it).
-- One call may carry many jobs of one worker (the outcomes of jobs that finished together);
-- each is checked and recorded on its own.
-- KEYS[1]      processing list                 coroq:{Q}:processing:<worker-id>
-- KEYS[2]      settling set                    coroq:{Q}:settling
-- then for each job, in order: its record hash      coroq:{Q}:job:<id>
--          and, for a member of a group, the group's hash and the ready list
--          (coroq:{Q}:group:<gid>, coroq:{Q}:ready); for a unique job, its unique key; for a
--          job holding a permit of its task's global concurrency, its limiter's keys
--          (lib/limits.lua), so that the permit goes on to a job waiting for it
-- then for job i, six arguments from ARGV[1 + 6 * (i - 1)]:
--          its raw bytes, exactly as taken from the ready list; result (JSON text);
--          finished_at (epoch seconds); record TTL (seconds); the attempt being acknowledged;
--          which of its keys follow its record: 'g' (group), 'u' (unique key), 'c' (limiter)
-- A job whose cancel was requested while it ran is recorded `cancelled`, its result dropped
-- (lib/cancel.lua). Either way the rest follows (producer/lua/lib/final.lua).
-- Returns, for each job, 1 when acknowledged (now, or by this same call before its reply was
-- lost), 2 when recorded as cancelled instead, 0 when it was no longer held by this attempt.
local acked = {}
local key = 3
for i = 1, #ARGV / 6 do
  local base = 6 * (i - 1)
  local record, group, ready, unique, limit
  record, group, ready, unique, key = job_keys(key, ARGV[base + 6])
  limit, key = limit_keys(key, ARGV[base + 6])
  -- 'reason' comes with the error and traceback of an earlier failed attempt (retry.lua).
  local seen = redis.call('HMGET', record, 'attempts', 'status', 'reason', 'watched',
    'cancel_requested', 'dependents')
  local outcome, status = outcome_of(seen[5], STATUS.succeeded)
  -- From the tail: the oldest jobs of the list sit there, and they tend to finish first.
  local held = release_held(KEYS[1], ARGV[base + 1], seen[1], seen[2], ARGV[base + 5],
    status, true)
  if held == 'settled' then
    acked[i] = outcome
  elseif held then
    release_permit(limit, record)
    if outcome == 2 then
      mark_cancelled(record, ARGV[base + 3], ARGV[base + 4])
    else
      redis.call('HSET', record, 'status', STATUS.succeeded, 'result', ARGV[base + 2],
        'finished_at', ARGV[base + 3])
      if seen[3] then
        redis.call('HDEL', record, 'reason', 'error', 'traceback')
      end
      redis.call('EXPIRE', record, ARGV[base + 4])
    end
    local succeeded = outcome ~= 2
    after_final({record = record, status = status,
      result = succeeded and ARGV[base + 2] or nil,
      error = not succeeded and 'cancelled by request' or nil,
      group = group, ready = ready, unique = unique, watched = seen[4], dependents = seen[6],
      settling = KEYS[2]})
    acked[i] = outcome
  else
    acked[i] = 0
  end
end
return acked
