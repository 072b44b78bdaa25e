-- Add a worker's counts of ended jobs to its queue's throughput history (producer/history.py):
-- a hash of `<minute>:ok` (jobs that succeeded) and `<minute>:failed` (jobs that ended dead)
-- fields, `<minute>` the unix minute they ended in. Sent with the worker's heartbeat, and only
-- when it has counts to add.
-- KEYS[1]    history hash           coroq:{Q}:history
-- ARGV[1]    the oldest minute kept: fields of earlier minutes are deleted ('': do not look
--            now; a worker asks once a minute, so the hash never holds much more than an hour)
-- ARGV[2]    how long the hash lives after this write (seconds): a queue no worker writes to
--            any more loses its history
-- ARGV[3..]  field, count pairs
-- Returns how many fields were deleted.
local key = KEYS[1]
for i = 3, #ARGV, 2 do
  redis.call('HINCRBY', key, ARGV[i], ARGV[i + 1])
end
local deleted = 0
if ARGV[1] ~= '' then
  local oldest = tonumber(ARGV[1])
  local old = {}
  -- Every field, not a range of minutes: after a quiet spell the stale ones may be of any age.
  for _, field in ipairs(redis.call('HKEYS', key)) do
    local minute = tonumber(string.match(field, '^(%-?%d+):'))
    if minute and minute < oldest then
      old[#old + 1] = field
    end
  end
  for first = 1, #old, 1000 do  -- unpack has a limit; a few fields are the usual case
    deleted = deleted + redis.call('HDEL', key, unpack(old, first, math.min(first + 999, #old)))
  end
end
redis.call('EXPIRE', key, ARGV[2])
return deleted
