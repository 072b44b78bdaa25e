-- Push a job that waits for others (docs/futures.md#dependencies; lib/after.lua): held in
-- its record until every job it waits for has succeeded, cancelled at once when one of them
-- is dead or cancelled already, pushed at once when all have succeeded already.
-- The caller has checked that each job waited for exists: it has a record, or its bytes are
-- in the ready list or the delayed set. The held job's id must be new (no record, or only a
-- waiting producer's mark; for a member of a group, only its group's fields): so it can
-- wait only for jobs older than itself, and no cycle can be built.
-- KEYS[1]  the job's record hash        coroq:{Q}:job:<id>
-- KEYS[2]  ready list                   coroq:{Q}:ready
-- KEYS[3]  delayed set                  coroq:{Q}:delayed
-- then for each job waited for: its record hash, and its list of dependents
--          (coroq:{Q}:job:<dep>, coroq:{Q}:dependents:<dep>)
-- last, for a member of a group: the group's hash (coroq:{Q}:group:<gid>), where it is
--          counted if cancelled here
-- ARGV[1]  the job's bytes (its envelope)
-- ARGV[2]  where it goes once released: 'back' or 'front' of the ready list, or its due time
--          in the delayed set (epoch ms)
-- ARGV[3]  how long a job may stay held (seconds): the TTL of its record and of the lists
-- ARGV[4]  record TTL of a job cancelled here (seconds)
-- ARGV[5]  the ids waited for, as a JSON array (kept in the record as `after`)
-- ARGV[6]  'member' for a member of a group (its group's hash is the last key), else ''
-- ARGV[7]  enqueued_at (epoch seconds)
-- ARGV[8...]  the id of each job waited for, in the order of KEYS
-- Returns {'held', number still waited for}, {'pushed', ''}, {'cancelled', dependency id,
-- its status} or {'exists', status} (the id is taken: nothing done).
local seen = redis.call('HMGET', KEYS[1], 'status', 'held', 'dependents', 'group_id')
local group = KEYS[4 + 2 * (#ARGV - 7)]  -- a member's group hash, after the pairs
if seen[2] == ARGV[1] then  -- this same call, sent again after a lost reply
  return {'held', redis.call('HGET', KEYS[1], 'after_left')}
end
if seen[1] or seen[2] or seen[3] or (seen[4] and ARGV[6] ~= 'member') then
  return {'exists', seen[1] or STATUS.queued}
end
local pending = {}
for i = 8, #ARGV do
  local dependency = KEYS[4 + 2 * (i - 8)]
  local status = redis.call('HGET', dependency, 'status')
  if status == STATUS.dead or status == STATUS.cancelled then
    local why = 'dependency ' .. ARGV[i] .. ' ended ' .. status
    redis.call('HSET', KEYS[1], 'status', STATUS.cancelled, 'reason', 'dependency',
      'error', why, 'after', ARGV[5], 'enqueued_at', ARGV[7],
      'finished_at', redis.call('TIME')[1])
    redis.call('EXPIRE', KEYS[1], ARGV[4])
    if group then
      count_in_group(KEYS[1], group, KEYS[2], member_outcome(KEYS[1], STATUS.cancelled, nil, why))
    end
    return {STATUS.cancelled, ARGV[i], status}
  elseif status ~= STATUS.succeeded then
    pending[#pending + 1] = i
  end
end
if #pending == 0 then
  place(KEYS[2], KEYS[3], ARGV[1], ARGV[2])
  return {'pushed', ''}
end
redis.call('HSET', KEYS[1], 'status', STATUS.queued, 'held', ARGV[1], 'held_to', ARGV[2],
  'after', ARGV[5], 'after_left', #pending, 'enqueued_at', ARGV[7])
redis.call('EXPIRE', KEYS[1], ARGV[3])
for _, i in ipairs(pending) do
  local dependency, list = KEYS[4 + 2 * (i - 8)], KEYS[5 + 2 * (i - 8)]
  redis.call('RPUSH', list, string.match(KEYS[1], '^.-}:job:(.+)$'))
  redis.call('EXPIRE', list, ARGV[3])
  redis.call('HSET', dependency, 'dependents', 1)
  -- A job that has not started keeps its record (with the mark) for as long as it waits.
  if redis.call('TTL', dependency) < tonumber(ARGV[3]) and
      not redis.call('HGET', dependency, 'status') then
    redis.call('EXPIRE', dependency, ARGV[3])
  end
end
return {'held', #pending}
