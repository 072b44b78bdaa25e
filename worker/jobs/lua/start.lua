-- Count the start of jobs a worker holds and is about to run: every start counts as an
-- attempt, recovered ones included, so a job that kills its worker every time ends dead.
-- One call starts a whole batch taken together. This is the only place a start is counted.
-- A job no longer in the worker's processing list (it was recovered and taken elsewhere
-- while the reply of a take or pop was on its way) is not started; if an earlier sending of
-- this same call had counted its start, that count is taken back (lib/records.lua).
-- KEYS[1]      processing list of the worker   coroq:{Q}:processing:<worker-id>
-- KEYS[1 + i]  job record hash of job i        coroq:{Q}:job:<id>
-- ARGV[1]  worker id
-- ARGV[2]  record TTL (seconds)
-- ARGV[3]  queue name
-- ARGV[4]  a token unique to this call (`start_token`): sent again after a lost reply, the
--          call counts nothing twice
-- then for job i, four arguments from ARGV[5 + 4 * (i - 1)]:
--          its raw bytes as held, task name, max_attempts in force for it, enqueued_at as the
--          producer stamped it ('' when unknown)
-- Returns the attempt number that starts now for each job, 0 for a job not held.
local attempts = {}
for i = 1, #KEYS - 1 do
  local record = KEYS[i + 1]
  local base = 5 + 4 * (i - 1)
  local ours = redis.call('HGET', record, 'start_token') == ARGV[4]
  if not redis.call('LPOS', KEYS[1], ARGV[base]) then
    attempts[i] = 0
    if ours then
      undo_start(record)
    end
  elseif ours then
    attempts[i] = tonumber(redis.call('HGET', record, 'attempts'))
  else
    local fields = {'worker', ARGV[1], 'task', ARGV[base + 1], 'queue', ARGV[3],
      'max_attempts', ARGV[base + 2], 'start_token', ARGV[4]}
    if ARGV[base + 3] ~= '' then
      fields[#fields + 1] = 'enqueued_at'
      fields[#fields + 1] = ARGV[base + 3]
    end
    attempts[i] = count_start(record, fields, ARGV[2])
  end
end
return attempts
