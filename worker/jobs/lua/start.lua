-- Count the start of jobs a worker holds and is about to run. Every start counts as an
-- attempt; a start lost with its worker is later forgiven unless the job ran alone
-- (recover.lua), so `attempts - forgiven` is the attempts held against the job. A job whose
-- held attempts are all used is not started: only lost attempts it was blamed for can bring
-- it here, and it goes to the dead list as `worker_lost` with its record as it is.
-- One call starts a whole batch taken together. This is the only place a start is counted.
-- A job no longer in the worker's processing list (it was recovered and taken elsewhere
-- while the reply of a take or pop was on its way) is not started; if an earlier sending of
-- this same call had counted its start, that count is taken back (lib/records.lua).
-- KEYS[1]      processing list of the worker   coroq:{Q}:processing:<worker-id>
-- KEYS[2]      settling set                    coroq:{Q}:settling (producer/lua/lib/after.lua)
-- KEYS[3]      pause mark                      coroq:{Q}:paused
-- KEYS[4]      ready list                      coroq:{Q}:ready
-- KEYS[5]      delayed set                     coroq:{Q}:delayed
-- then for each job, in order: its record hash      coroq:{Q}:job:<id>
--          and, for a member of a group, the group's hash and the ready list; for a unique
--          job, its unique key; for a job of a limited task, its limiter's keys (lib/limits.lua)
-- ARGV[1]  worker id
-- ARGV[2]  record TTL (seconds)
-- ARGV[3]  queue name
-- ARGV[4]  a token unique to this call (`start_token`): sent again after a lost reply, the
--          call counts nothing twice
-- ARGV[5]  how many jobs may run beside each other on the worker while these run: the size
--          of a trial group of suspects, 1 for a worker that runs one job at a time, '' for
--          an ordinary batch (kept as the record's `group`, read by recover.lua)
-- ARGV[6]  how long a permit of a limited task lasts unless renewed (ms)
-- then for job i, seven arguments from ARGV[7 + 7 * (i - 1)]:
--          its raw bytes as held, task name, max_attempts in force for it, enqueued_at as the
--          producer stamped it ('' when unknown), which of its keys follow its record in KEYS
--          ('g' group, 'u' unique key, 'r' and 'c' its limiter's: any of them, or ''), its
--          task's rate as '<count>/<period ms>' and its global concurrency ('' when none)
-- A job cancelled before it started, or whose cancel was requested while it ran on a worker
-- that was then lost, is not started: it leaves the processing list, `cancelled` for good
-- (lib/cancel.lua), and counted in its group if it has one (producer/lua/lib/group.lua).
-- A job of a paused queue (taken by a blocking pop as the pause began) is not started: it goes
-- back to the consuming end of the ready list. A job over its task's limits is not started
-- either: it waits for a permit or for its time (lib/limits.lua).
-- Returns three numbers per job: the attempt number that starts now (0: not started: not
-- held, cancelled, put back or over a limit; minus the attempts made: not started, its held
-- attempts used up), its `forgiven` count (-1 for a job cancelled, -2 for one put back as the
-- queue is paused, -3 for one over a limit), and for a job over a rate the time (epoch ms) it
-- waits for in the delayed set, else 0.
local results = {}
local key = 6
local over_limit_until = 0
-- Whether a job of a limited task may start (its permit taken); else it waits, unstarted, and
-- `over_limit_until` says until when, for one over its rate (0 for one blocked).
local function admitted(limit, record, args, base)
  local count, period = string.match(args[base + 5], '^(%d+)/([%d.]+)$')
  local verdict = admit(limit, {record = record, raw = args[base], processing = KEYS[1],
    delayed = KEYS[5], count = tonumber(count), period = tonumber(period),
    concurrency = tonumber(args[base + 6]), lease = tonumber(args[6])},
    tonumber(now_text()) * 1000)
  over_limit_until = math.max(verdict, 0)
  return verdict == 0
end
local paused = redis.call('EXISTS', KEYS[3]) == 1
local put_back = {}
for i = 1, (#ARGV - 6) / 7 do
  local base = 7 + 7 * (i - 1)
  local record, group, ready, unique, limit
  record, group, ready, unique, key = job_keys(key, ARGV[base + 4])
  limit, key = limit_keys(key, ARGV[base + 4])
  local due = 0
  local seen = redis.call('HMGET', record, 'start_token', 'attempts', 'forgiven', 'group',
    'status', 'cancel_requested', 'watched', 'dependents')
  local ours = seen[1] == ARGV[4]
  local attempts = tonumber(seen[2] or '0')
  local forgiven = tonumber(seen[3] or '0')
  local attempt
  if not redis.call('LPOS', KEYS[1], ARGV[base]) then
    attempt = 0
    if ours then
      undo_start(record)
    end
  elseif ours then
    attempt = attempts
  elseif paused then
    -- Taken by a blocking pop as the queue was paused: back to the consuming end, unstarted.
    attempt, forgiven = 0, -2
    redis.call('LREM', KEYS[1], 1, ARGV[base])
    put_back[#put_back + 1] = ARGV[base]
  elseif seen[5] == STATUS.cancelled or seen[6] then
    attempt, forgiven = 0, -1
    redis.call('LREM', KEYS[1], 1, ARGV[base])
    if seen[5] ~= STATUS.cancelled then
      mark_cancelled(record, now_text(), ARGV[2])
      after_final({record = record, status = STATUS.cancelled, error = 'cancelled by request',
        group = group, ready = ready, unique = unique, watched = seen[7],
        dependents = seen[8], settling = KEYS[2]})
    end
  elseif attempts - forgiven >= tonumber(ARGV[base + 2]) then
    attempt = -attempts
  elseif (limit.rate or limit.permits) and not admitted(limit, record, ARGV, base) then
    attempt, forgiven = 0, -3
    due = over_limit_until
  else
    local fields = {'worker', ARGV[1], 'task', ARGV[base + 1], 'queue', ARGV[3],
      'max_attempts', ARGV[base + 2], 'start_token', ARGV[4]}
    if ARGV[base + 3] ~= '' then
      fields[#fields + 1] = 'enqueued_at'
      fields[#fields + 1] = ARGV[base + 3]
    end
    if ARGV[5] ~= '' then
      fields[#fields + 1] = 'group'
      fields[#fields + 1] = ARGV[5]
    elseif seen[4] then
      redis.call('HDEL', record, 'group')
    end
    attempt = count_start(record, fields, ARGV[2])
  end
  results[#results + 1] = attempt
  results[#results + 1] = forgiven
  results[#results + 1] = due
end
for i = #put_back, 1, -1 do  -- the oldest ends at the consuming end, as it was taken
  redis.call('RPUSH', KEYS[4], put_back[i])
end
return results
