-- Move delayed jobs that are due to the consuming end of the ready list, oldest first, at
-- most `limit` of them; returns the due time of the next delayed job (epoch ms), or -1.
-- A queue with nothing due costs one ZRANGE.
local function promote_due(delayed, ready, now, limit)
  local next_job = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
  if next_job[2] and tonumber(next_job[2]) <= now then
    local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, limit)
    -- Latest due pushed first: the earliest due ends up at the consuming end, taken first.
    for i = #due, 1, -1 do
      redis.call('ZREM', delayed, due[i])
      redis.call('RPUSH', ready, due[i])
    end
    next_job = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
  end
  if next_job[2] then
    return tonumber(next_job[2])
  end
  return -1
end
