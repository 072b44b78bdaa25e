-- Count the start of the job a blocking pop has just moved to the head of a worker's
-- processing list. The consumer sends this script right behind its BLMOVE, in the same
-- write, and Redis runs it as soon as the pop is served: an idle worker starts a job after
-- one round trip instead of two.
-- It starts the head job only when it can tell that the job is new and well formed, and
-- otherwise does nothing: the consumer then counts the start itself (start.lua) after
-- decoding the job, as for jobs taken in a batch. A head job this consumer has started
-- already (its record holds a token with this consumer's prefix) is not new: the pop timed
-- out, or a retried job came back to the same worker.
-- The record's key is built here from the job's id, in the queue's hash slot (`{Q}`).
-- KEYS[1]  processing list of the worker   coroq:{Q}:processing:<worker-id>
-- ARGV[1]  worker id
-- ARGV[2]  record TTL (seconds)
-- ARGV[3]  queue name
-- ARGV[4]  prefix of a job record's key   coroq:{Q}:job:
-- ARGV[5]  this consumer's token prefix
-- ARGV[6]  the token the record keeps (starts with ARGV[5]; the same for every call of
--          one consumer, which builds the call once)
-- ARGV[7]  max_payload_bytes
-- ARGV[8]  max_attempts of tasks that set none
-- then pairs from ARGV[9]: a registered task's name, its own max_attempts (0: none)
-- Returns {} when nothing was started, else {job id, attempt number}.
local head = redis.call('LINDEX', KEYS[1], 0)
if not head or #head > tonumber(ARGV[7]) or string.sub(head, 1, 1) ~= '{' then
  return {}
end
local decoded, job = pcall(cjson.decode, head)
if not decoded or type(job) ~= 'table' then
  return {}
end
local id, task = job['id'], job['task']
if type(id) ~= 'string' or #id > 256 or not string.match(id, '^[%w%-_.:]+$') then
  return {}  -- no id (the worker gives it one) or one this script does not vouch for
end
local function absent(value)
  return value == nil or value == cjson.null
end
local function positive_number(value, allow_zero)
  return type(value) == 'number' and value < math.huge and (value > 0 or (allow_zero and value == 0))
end
-- Leave to the worker's own checks anything its envelope model might judge differently.
if not absent(job['max_attempts']) or type(job['args'] or {}) ~= 'table'
    or not (absent(job['timeout']) or positive_number(job['timeout'], false))
    or not (absent(job['enqueued_at']) or positive_number(job['enqueued_at'], true)) then
  return {}
end
local max_attempts
for i = 9, #ARGV - 1, 2 do
  if ARGV[i] == task then
    max_attempts = tonumber(ARGV[i + 1])
    if max_attempts == 0 then
      max_attempts = tonumber(ARGV[8])
    end
    break
  end
end
if not max_attempts then
  return {}  -- not a task of this worker: it goes to the dead list, uncounted
end
local record = ARGV[4] .. id
local token = redis.call('HGET', record, 'start_token')
if token and string.sub(token, 1, #ARGV[5]) == ARGV[5] then
  return {}
end
local attempt = redis.call('HINCRBY', record, 'attempts', 1)
local now = redis.call('TIME')
redis.call('HSET', record, 'status', 'running', 'worker', ARGV[1],
  'started_at', now[1] .. '.' .. string.format('%06d', tonumber(now[2])),
  'task', task, 'queue', ARGV[3], 'max_attempts', max_attempts, 'start_token', ARGV[6])
if not absent(job['enqueued_at']) then
  redis.call('HSET', record, 'enqueued_at', string.format('%.17g', job['enqueued_at']))
end
redis.call('EXPIRE', record, ARGV[2])
return {id, attempt}
