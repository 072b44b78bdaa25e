-- Push the job of a periodic task's tick, exactly once whatever the number of workers
-- (docs/scheduling.md#periodic-jobs). The schedules hash keeps, per schedule, the next tick
-- still to push (`<name>`), how it ticks (`spec:<name>`) and what its last tick did
-- (`last:<name>`). Every worker computes the same ticks and calls this at each; the first
-- call at or after a tick pushes its job and moves `<name>` past it, so the others (and any
-- worker restarted meanwhile) find nothing to do.
-- KEYS[1]  schedules hash        coroq:{Q}:schedules
-- KEYS[2]  ready list            coroq:{Q}:ready
-- ARGV[1]  the schedule's name
-- ARGV[2]  how it ticks (its spec): a schedule seen for the first time, or changed, is armed
--          for its next tick, and pushes nothing now
-- ARGV[3]  now (epoch seconds, the worker's clock)
-- ARGV[4]  the latest tick at or before now
-- ARGV[5]  the first tick after now
-- ARGV[6]  grace (seconds): a tick pushed later than this after its time was missed
-- ARGV[7]  '1' to run a missed tick once (catch_up), '' to skip missed ticks
-- ARGV[8]  the job of the latest tick (its envelope; its id names the schedule and the tick)
-- ARGV[9]  that job's id
-- Returns {'armed' | 'waiting' | 'pushed' | 'skipped', the next tick still to push, 1 when
-- ticks before the latest one went by with no worker to push them (else 0)}.
local name = ARGV[1]
local seen = redis.call('HMGET', KEYS[1], name, 'spec:' .. name)
if not seen[1] or seen[2] ~= ARGV[2] then
  redis.call('HSET', KEYS[1], name, ARGV[5], 'spec:' .. name, ARGV[2])
  return {'armed', ARGV[5], 0}
end
local now = tonumber(ARGV[3])
if tonumber(seen[1]) > now then
  return {'waiting', seen[1], 0}
end
local what = 'skipped'
if now - tonumber(ARGV[4]) <= tonumber(ARGV[6]) or ARGV[7] == '1' then
  redis.call('LPUSH', KEYS[2], ARGV[8])
  what = 'pushed'
end
redis.call('HSET', KEYS[1], name, ARGV[5], 'last:' .. name, cjson.encode({
  tick = tonumber(ARGV[4]), job_id = ARGV[9], pushed = what == 'pushed', at = now}))
local missed = 0
if tonumber(seen[1]) < tonumber(ARGV[4]) then
  missed = 1
end
return {what, ARGV[5], missed}
