-- Move jobs blocked on a limiter whose permits lapsed (their worker was lost) to the consuming
-- end of the ready list, as many as there are permits free (lib/limits.lua); forget the
-- limiter once none of its jobs is blocked. Every worker sweeps its queues now and then.
-- KEYS[1]  limiters with blocked jobs   coroq:{Q}:limited
-- KEYS[2]  the limiter's permits        coroq:{Q}:permits:<limiter>
-- KEYS[3]  its blocked jobs             coroq:{Q}:blocked:<limiter>
-- KEYS[4]  ready list                   coroq:{Q}:ready
-- ARGV[1]  the limiter
-- Returns how many jobs were moved.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', server_ms())
local free = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') - redis.call('ZCARD', KEYS[2])
local moved = 0
while moved < free do
  local job = redis.call('RPOP', KEYS[3])
  if not job then
    break
  end
  redis.call('RPUSH', KEYS[4], job)
  moved = moved + 1
end
if redis.call('LLEN', KEYS[3]) == 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return moved
