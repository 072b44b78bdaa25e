-- The writes to a job's record that several scripts make: counting a start, and taking a
-- counted start back. The record's key always comes from the calling script's KEYS.

-- The server's clock as epoch seconds with microseconds: every `started_at` comes from it,
-- so the times of jobs started by different workers compare. Read once per call.
local server_now = nil
local function now_text()
  if server_now == nil then
    local now = redis.call('TIME')
    server_now = now[1] .. '.' .. string.format('%06d', tonumber(now[2]))
  end
  return server_now
end

-- Count a new attempt of the job and mark it running; returns the attempt number.
-- `token` identifies the call that counted it (`start_token`), so the same call sent again
-- after a lost reply counts nothing twice, and only that call can take the start back.
local function count_start(record, attempt_fields, ttl)
  local started_at = now_text()  -- before any write: a refused TIME leaves nothing half done
  local attempt = redis.call('HINCRBY', record, 'attempts', 1)
  redis.call('HSET', record, 'status', STATUS.running, 'started_at', started_at,
    unpack(attempt_fields))
  redis.call('EXPIRE', record, ttl)
  return attempt
end

-- Take back a start that was counted for an attempt that never ran (a job stopped by
-- shutdown, or moved back before its handler began); the job is queued again.
local function undo_start(record)
  if tonumber(redis.call('HGET', record, 'attempts') or '0') > 0 then
    redis.call('HINCRBY', record, 'attempts', -1)
  end
  redis.call('HSET', record, 'status', STATUS.queued)
  redis.call('HDEL', record, 'start_token')  -- so a repeat of the same call undoes nothing
end
