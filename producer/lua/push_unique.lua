-- Push a unique job (docs/scheduling.md#unique-jobs): only if no job holds its key. The key
-- `<prefix>:{Q}:unique:<key>` holds the id of the job that took it, from its push until it
-- ends (the script that gives it a final status lets the key go, or keeps it `unique_ttl`
-- seconds more: lib/unique.lua).
-- KEYS[1]  the unique key        coroq:{Q}:unique:<key>
-- KEYS[2]  ready list            coroq:{Q}:ready
-- KEYS[3]  delayed set           coroq:{Q}:delayed
-- KEYS[4]  the job's record      coroq:{Q}:job:<id>
-- ARGV[1]  the job's bytes (its envelope, whose `unique` names the key)
-- ARGV[2]  where it goes: 'back' or 'front' of the ready list, or its due time in the delayed
--          set (epoch ms)
-- ARGV[3]  the job's id
-- ARGV[4]  the longest the key is held (seconds): a job lost without an end lets it go then
-- ARGV[5]  seconds the key stays taken after the job ends ('' or 0: none)
-- ARGV[6]  the unique key as given (kept in the record as `unique`)
-- Returns the id of the job that holds the key: ARGV[3] when pushed now, another when this one
-- is a duplicate (nothing pushed).
local holder = redis.call('GET', KEYS[1])
if holder then
  return holder
end
redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4])
place(KEYS[2], KEYS[3], ARGV[1], ARGV[2])
-- Where a cancel finds the key of a job not started yet; a start keeps the field.
redis.call('HSET', KEYS[4], 'unique', ARGV[6])
if ARGV[5] ~= '' and tonumber(ARGV[5]) > 0 then
  redis.call('HSET', KEYS[4], 'unique_ttl', ARGV[5])
end
if redis.call('TTL', KEYS[4]) < 0 then
  redis.call('EXPIRE', KEYS[4], ARGV[4])
end
return ARGV[3]
