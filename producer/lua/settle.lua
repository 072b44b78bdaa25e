-- Settle the jobs held for a job that has ended (docs/futures.md#dependencies; lib/after.lua):
-- on success each dependent's count goes down, and one whose count reaches zero is pushed
-- where it was meant to go; on dead or cancelled each dependent still held is cancelled,
-- naming the job in its reason, and a dependent that others wait for is marked settling in
-- turn. Done once: the job's id leaves the settling set here.
-- KEYS[1]  settling set               coroq:{Q}:settling
-- KEYS[2]  ready list                 coroq:{Q}:ready
-- KEYS[3]  delayed set                coroq:{Q}:delayed
-- KEYS[4]  the ended job's record     coroq:{Q}:job:<id>
-- KEYS[5]  its list of dependents     coroq:{Q}:dependents:<id>
-- then for each dependent, in the list's order: its record, and when it is a member of a
--          group, the group's hash (coroq:{Q}:group:<gid>)
-- ARGV[1]  the ended job's id
-- ARGV[2]  record TTL of a dependent cancelled here (seconds)
-- ARGV[3]  the number of dependents the caller read; then for each: 'g' when its group's
--          hash follows its record in KEYS, else ''
-- Returns 1 when settled here, 0 when it was not settling (done already), -1 when its list of
-- dependents is no longer what the caller read (read it again).
local id = ARGV[1]
if redis.call('SISMEMBER', KEYS[1], id) == 0 then
  return 0
end
if redis.call('LLEN', KEYS[5]) ~= tonumber(ARGV[3]) then
  return -1
end
local status = redis.call('HGET', KEYS[4], 'status')
local key = 6
for i = 1, tonumber(ARGV[3]) do
  local record, group = KEYS[key], nil
  if ARGV[3 + i] == 'g' then
    group = KEYS[key + 1]
    key = key + 2
  else
    key = key + 1
  end
  local seen = redis.call('HMGET', record, 'held', 'held_to', 'dependents', 'watched')
  if seen[1] then  -- still held (not cancelled meanwhile)
    if status == STATUS.succeeded then
      if redis.call('HINCRBY', record, 'after_left', -1) <= 0 then
        redis.call('HDEL', record, 'held', 'held_to')
        place(KEYS[2], KEYS[3], seen[1], seen[2])
      end
    else
      local why = 'dependency ' .. id .. ' ended ' .. (status or 'unknown')
      redis.call('HSET', record, 'status', STATUS.cancelled, 'reason', 'dependency',
        'error', why, 'finished_at', redis.call('TIME')[1])
      redis.call('HDEL', record, 'held', 'held_to')
      redis.call('EXPIRE', record, ARGV[2])
      after_final({record = record, status = STATUS.cancelled, error = why, group = group,
        ready = KEYS[2], watched = seen[4], dependents = seen[3], settling = KEYS[1]})
    end
  end
end
redis.call('DEL', KEYS[5])
redis.call('SREM', KEYS[1], id)
return 1
