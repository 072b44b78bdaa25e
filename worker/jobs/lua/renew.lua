-- Extend the permits of the limited jobs a live worker runs (lib/limits.lua); sent with its
-- heartbeat, so a permit lapses only when its worker's liveness does.
-- KEYS[i]    a permits set                 coroq:{Q}:permits:<limiter>
-- ARGV[1]    how long the permits now last (ms)
-- ARGV[1+i]  the id of the job holding a permit in KEYS[i]
-- A permit no longer held (its job ended, or it lapsed) is not given back. Returns how many
-- were extended.
local lease = tonumber(ARGV[1])
local until_ms = server_ms() + lease
local extended = 0
for i = 1, #KEYS do
  extended = extended + redis.call('ZADD', KEYS[i], 'XX', 'CH', until_ms, ARGV[i + 1])
  if redis.call('ZSCORE', KEYS[i], ARGV[i + 1]) then
    redis.call('PEXPIRE', KEYS[i], lease)
  end
end
return extended
