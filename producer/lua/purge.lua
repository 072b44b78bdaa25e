-- Remove dead-list entries older than a cutoff, oldest first (the tail of the list holds the
-- oldest, as entries are added at the head), at most ARGV[2] per call.
-- KEYS[1]  dead list             coroq:{Q}:dead
-- ARGV[1]  cutoff: entries whose failed_at (epoch seconds) is below it go
-- ARGV[2]  at most this many entries per call
-- Returns the number of entries removed.
local cutoff = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local removed = 0
while removed < limit do
  local oldest = redis.call('LINDEX', KEYS[1], -1)
  if not oldest then
    break
  end
  local ok, entry = pcall(cjson.decode, oldest)
  local failed_at = 0
  if ok and type(entry) == 'table' and tonumber(entry['failed_at']) then
    failed_at = tonumber(entry['failed_at'])
  end
  if failed_at >= cutoff then
    break
  end
  redis.call('RPOP', KEYS[1])
  removed = removed + 1
end
return removed
