-- Counting the start of a job a script has just moved into a worker's processing list, when
-- the script can tell that the job is well formed (take.lua and start_popped.lua begin with
-- this file; `producer/scripts.py` joins them). A job it cannot vouch for is left to the
-- consumer, which counts its start itself (start.lua) after decoding it.
-- Both scripts take the same arguments for it, from ARGV[P] on (P is given to each function):
-- ARGV[P]      worker id
-- ARGV[P + 1]  record TTL (seconds)
-- ARGV[P + 2]  queue name
-- ARGV[P + 3]  prefix of a job record's key   coroq:{Q}:job:
-- ARGV[P + 4]  the token the record keeps (`start_token`): the consumer's token prefix, then
--              a part unique to the call
-- ARGV[P + 5]  max_payload_bytes
-- ARGV[P + 6]  max_attempts of tasks that set none
-- then, to the end of ARGV, pairs: a registered task's name, its own max_attempts (0: none)
-- The record's key is built from the job's id, in the queue's hash slot (`{Q}`).

local function absent(value)
  return value == nil or value == cjson.null
end

local function positive_number(value, allow_zero)
  return type(value) == 'number' and value < math.huge and (value > 0 or (allow_zero and value == 0))
end

-- Worked out once per call, however many jobs it starts (a take starts up to a batch).
local limits_by_task = nil
local started_at = nil

-- Registered task name -> the max_attempts in force for its jobs.
local function task_limits(P)
  if limits_by_task == nil then
    limits_by_task = {}
    for i = #ARGV - 1, P + 7, -2 do  -- backwards: a name given twice keeps its first limit
      local max_attempts = tonumber(ARGV[i + 1])
      if max_attempts == 0 then
        max_attempts = tonumber(ARGV[P + 6])
      end
      limits_by_task[ARGV[i]] = max_attempts
    end
  end
  return limits_by_task
end

-- The server's clock as epoch seconds with microseconds, read once per call.
local function now_text()
  if started_at == nil then
    local now = redis.call('TIME')
    started_at = now[1] .. '.' .. string.format('%06d', tonumber(now[2]))
  end
  return started_at
end

-- The job's id, decoded envelope and max_attempts in force when the job is well formed and of
-- a task this worker runs; nil otherwise.
local function vouch_for(raw, P)
  if #raw > tonumber(ARGV[P + 5]) or string.sub(raw, 1, 1) ~= '{' then
    return nil
  end
  local decoded, job = pcall(cjson.decode, raw)
  if not decoded or type(job) ~= 'table' then
    return nil
  end
  local id = job['id']
  if type(id) ~= 'string' or #id > 256 or not string.match(id, '^[%w%-_.:]+$') then
    return nil  -- no id (the worker gives it one) or one this script does not vouch for
  end
  -- Leave to the worker's own checks anything its envelope model might judge differently.
  if not absent(job['max_attempts']) or type(job['args'] or {}) ~= 'table'
      or not (absent(job['timeout']) or positive_number(job['timeout'], false))
      or not (absent(job['enqueued_at']) or positive_number(job['enqueued_at'], true)) then
    return nil
  end
  local max_attempts = task_limits(P)[job['task']]
  if max_attempts == nil then
    return nil  -- not a task of this worker: it goes to the dead list, uncounted
  end
  return id, job, max_attempts
end

-- Count a new attempt of the job in its record; returns the attempt number.
local function count_start(id, job, max_attempts, P)
  local record = ARGV[P + 3] .. id
  local attempt = redis.call('HINCRBY', record, 'attempts', 1)
  local fields = {'status', 'running', 'worker', ARGV[P], 'started_at', now_text(),
    'task', job['task'], 'queue', ARGV[P + 2], 'max_attempts', max_attempts,
    'start_token', ARGV[P + 4]}
  if not absent(job['enqueued_at']) then
    fields[#fields + 1] = 'enqueued_at'
    fields[#fields + 1] = string.format('%.17g', job['enqueued_at'])
  end
  redis.call('HSET', record, unpack(fields))
  redis.call('EXPIRE', record, ARGV[P + 1])
  return attempt
end
