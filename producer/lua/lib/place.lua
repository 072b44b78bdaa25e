-- Where a script pushes a job: `where` is 'back' or 'front' of the ready list (workers take
-- from the right: the front is RPUSH), or the job's due time in the delayed set (epoch ms).
local function place(ready, delayed, raw, where)
  if where == 'front' then
    redis.call('RPUSH', ready, raw)
  elseif where == 'back' then
    redis.call('LPUSH', ready, raw)
  else
    redis.call('ZADD', delayed, where, raw)
  end
end
