-- Move delayed jobs that are due to the consuming end of the ready list, oldest first
-- (lib/promote.lua): a retry at its due time, when the worker that scheduled it is idle.
-- KEYS[1]  delayed set           coroq:{Q}:delayed
-- KEYS[2]  ready list            coroq:{Q}:ready
-- ARGV[1]  now (epoch milliseconds)
-- ARGV[2]  at most this many jobs per call
-- Returns the due time of the next delayed job in ms, or -1 when none is left.
return promote_due(KEYS[1], KEYS[2], tonumber(ARGV[1]), ARGV[2])
