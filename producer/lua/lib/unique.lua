-- Unique jobs (docs/scheduling.md#unique-jobs): every script that gives a job its final status
-- lets its unique key go, in the same step, when the job holds it (push_unique.lua took it);
-- with the record's `unique_ttl`, the key stays taken that many seconds more. The caller
-- passes the key in KEYS (named by the envelope's `unique`).
local function release_unique(lock, record)
  local id = string.match(record, '^.-}:job:(.+)$')
  if redis.call('GET', lock) ~= id then
    return  -- taken by another job, or gone
  end
  local keep = tonumber(redis.call('HGET', record, 'unique_ttl') or '0')
  if keep > 0 then
    redis.call('EXPIRE', lock, math.ceil(keep))
  else
    redis.call('DEL', lock)
  end
end
