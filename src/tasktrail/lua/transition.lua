-- One transition of one run, atomically: check that it may happen, update the
-- hot record, store Celery's own result meta (when tasktrail is the result
-- backend), append the events to the run, subject and firehose streams, mark the
-- run for the database flusher and wake the web processes.
--
-- KEYS[1] run hash   KEYS[2] run stream   KEYS[3] firehose   KEYS[4] dirty zset
-- KEYS[5] the parent run's hash (a new run inherits its owner, team and subject)
-- KEYS[6] Celery's result key of this run (celery-task-meta-<id>)
-- ARGV[1] run id     ARGV[2] op (publish|start|retry|finish|cancel|progress|feed|store)
-- ARGV[3] attempt    ARGV[4] status to set ('' = unchanged)   ARGV[5] now (epoch s,
-- the caller's clock: shown to people, never used to order writes)
-- ARGV[6] fields to set (JSON object)   ARGV[7] fields set only when missing (JSON)
-- ARGV[8] events (JSON array of [kind, data as a JSON string])   ARGV[9] the run's key
-- base (the key prefix; on a Redis Cluster the prefix and the run's shard tag, so that
-- every key below is in one slot: keys.py)
-- ARGV[10] run stream maxlen  ARGV[11] subject maxlen  ARGV[12] firehose maxlen
-- ARGV[13] ttl after finish (s)   ARGV[14] flush delay of unfinished runs (s)
-- ARGV[15] Celery result meta to store ('' = none)   ARGV[16] its ttl (s, 0 = none)
-- ARGV[17] generation of the message this write comes from ('' = not known)
-- ARGV[18] flags: f = a fresh publish (not a retry): a known id starts a new
--   generation; r = a replacement (Task.replace) continues the run; e = an eager start:
--   a finished run starts a new generation; x = never create a record; d = KEYS[6] is
--   tasktrail's to manage (a fresh publish marks a stored state stale); m = store
--   Celery's result meta only; p = a publish deferred by an outage, replayed: a known
--   run keeps its status (its worker may have moved it on meanwhile); j = return a finished run's whole record (the caller
--   keeps a journal of them); c = a Redis Cluster: the subject stream is in another
--   slot, so its events are returned for the caller to append (transitions.py)
-- ARGV[19] latency histogram bucket bounds (seconds, ascending, comma-separated)
-- ARGV[20] with c: what a new run inherits from its parent (JSON: owner, team, subject),
--   read by the caller (the parent's record is in another slot)
-- Returns {event ids, cancel requested (0/1), generation, applied (0/1), the finished
-- record as JSON (j) or false, the subject's events as JSON (c) or false}.

local FINISHED = {SUCCESSFUL = true, FAILED = true, CANCELLED = true}
-- A run failed because its worker died may run again (a redelivered message).
local LOST = {['billiard.exceptions.WorkerLostError'] = true, ['celery.exceptions.WorkerLostError'] = true,
  ['tasktrail.exceptions.WorkerLost'] = true}
local op = ARGV[2]
local attempt = tonumber(ARGV[3])
local status = ARGV[4]
local flags = ARGV[18]
local function flag(c) return string.find(flags, c, 1, true) ~= nil end

local cur = redis.call('HMGET', KEYS[1], 'status', 'attempts', 'worker', 'cancel_requested_at',
  'version', 'gen', 'error_type')
local exists = cur[1] ~= false
local attempts = tonumber(cur[2] or '0') or 0
local gen = tonumber(cur[6] or '1') or 1
local from_gen = tonumber(ARGV[17])

local function refused(cancel)
  return {{}, cancel and 1 or 0, gen, 0}
end

-- A write from an execution of an earlier publish of this id: that generation is over.
if exists and from_gen and from_gen < gen then return refused(false) end

-- Celery's own result first, by Celery's rule: a stored SUCCESS is never overwritten,
-- unless it is an earlier generation's (meta_stale): the new execution's store replaces
-- whatever an earlier publish of the id left, as it would for any other state.
if ARGV[15] ~= '' then
  local old = redis.call('GET', KEYS[6])
  local ok, meta = pcall(cjson.decode, old or '{}')
  local stale = exists and redis.call('HGET', KEYS[1], 'meta_stale') == '1'
  if stale then redis.call('HDEL', KEYS[1], 'meta_stale') end
  if stale or not (ok and type(meta) == 'table' and meta['status'] == 'SUCCESS') then
    if tonumber(ARGV[16]) > 0 then
      redis.call('SET', KEYS[6], ARGV[15], 'EX', ARGV[16])
    else
      redis.call('SET', KEYS[6], ARGV[15])
    end
    redis.call('PUBLISH', KEYS[6], ARGV[15])
  end
end

if flag('m') then return {{}, 0, gen, 1} end
if not exists and flag('x') then return refused(false) end

local new_generation = false
if op == 'publish' and exists then
  if flag('r') or flag('p') then
    -- The replacement carries the run on; a publish replayed after an outage found the
    -- run already moved on by its worker (whose process has none of this backlog): it
    -- only fills in what the record lacks.
    status = ''
  elseif flag('f') then
    new_generation = true
  else
    -- A re-publish of a known run is Celery scheduling its next attempt.
    if FINISHED[cur[1]] then return refused(cur[1] == 'CANCELLED') end
    if cur[1] == 'RUNNING' or cur[1] == 'RETRYING' then status = 'RETRYING' else status = '' end
  end
elseif op == 'start' and exists and FINISHED[cur[1]] then
  if flag('e') then
    new_generation = true
  elseif not (cur[1] == 'FAILED' and LOST[cur[7] or '']) then
    return refused(cur[1] == 'CANCELLED')
  end
elseif exists and FINISHED[cur[1]] then
  -- Celery's own rule for what its result backend stores: only SUCCESS is final; a
  -- later FAILURE or REVOKED of the same run replaces an earlier one (two workers
  -- revoking one id, say). The record follows when the write is Celery's own store,
  -- except over a cancel made through tasktrail, whose reason and author it keeps.
  if not (ARGV[15] ~= '' and op == 'finish' and cur[1] ~= 'SUCCESSFUL' and FINISHED[status]
          and not cur[4]) then
    return refused(cur[1] == 'CANCELLED')
  end
elseif op == 'progress' or op == 'feed' or op == 'store' then
  if exists and attempt > 0 and attempt < attempts then return refused(false) end
  -- No record: Redis restarted empty under a running task. Start it over (the
  -- database row holds the rest; reads merge the two).
  if not exists and status == '' then status = 'RUNNING' end
elseif op == 'cancel' then
  if not exists then return refused(false) end
  -- A running attempt is asked to stop (cooperatively); a waiting one ends now.
  if cur[1] == 'RUNNING' then status = '' end
elseif op ~= 'publish' and attempt >= 0 and attempt < attempts then
  return refused(false) -- a late signal from an earlier attempt
end

local version = tonumber(cur[5] or '0') or 0
if new_generation then
  -- The same id published again: a new run under the same id. The event stream goes
  -- on (resume still works); the record and Celery's result start over.
  if cur[3] and cur[3] ~= '' then redis.call('SREM', ARGV[9] .. ':active:' .. cur[3], ARGV[1]) end
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', ARGV[9] .. ':cancels', ARGV[1])
  gen = gen + 1
  exists = false
  attempts = 0
  cur = {false, false, false, false, false, false, false}
  if op == 'publish' then status = 'READY' else status = 'RUNNING' end
end

local fields = cjson.decode(ARGV[6])
local create = cjson.decode(ARGV[7])
local flat = {}
if not exists and create['owner'] == nil then
  local inherited
  if flag('c') then
    local from = cjson.decode(ARGV[20])
    inherited = {from['owner'] or false, from['team'] or false, from['subject'] or false}
  else
    inherited = redis.call('HMGET', KEYS[5], 'owner', 'team', 'subject')
  end
  if inherited[1] then create['owner'] = inherited[1] end
  if inherited[2] then create['team'] = inherited[2] end
  if inherited[3] then create['subject'] = inherited[3] end
end
local first_start = false
for k, v in pairs(create) do
  -- A new record has none of them: no need to ask field by field.
  if not exists or redis.call('HEXISTS', KEYS[1], k) == 0 then
    flat[#flat + 1] = k; flat[#flat + 1] = v
    if k == 'started_at' then first_start = true end
  end
end
local apply = fields
if op == 'publish' and exists then apply = {next_attempt_at = fields['next_attempt_at']} end
if op == 'publish' and exists and flag('p') and FINISHED[cur[1]] then apply = {} end
if op == 'cancel' and status == '' then apply = {cancel_requested_at = fields['cancel_requested_at'], cancelled_by = fields['cancelled_by']} end
for k, v in pairs(apply) do flat[#flat + 1] = k; flat[#flat + 1] = v end
if status ~= '' then flat[#flat + 1] = 'status'; flat[#flat + 1] = status end
if attempt > attempts then flat[#flat + 1] = 'attempts'; flat[#flat + 1] = tostring(attempt) end
-- A record this write creates always names its run, whatever the caller passed: one
-- rebuilt after Redis restarted empty must still reach the database.
if not exists then
  flat[#flat + 1] = 'gen'; flat[#flat + 1] = tostring(gen)
  flat[#flat + 1] = 'id'; flat[#flat + 1] = ARGV[1]
end
-- A fresh publish leaves Celery's stored state of an earlier use of the id in place
-- (AsyncResult reads it until this run stores one, as with Celery alone) but marks it
-- stale, so this run's first store replaces it even if it says SUCCESS.
if op == 'publish' and flag('f') and flag('d') and redis.call('EXISTS', KEYS[6]) == 1 then
  flat[#flat + 1] = 'meta_stale'; flat[#flat + 1] = '1'
end
-- Versions order the flusher's writes. They come from the Redis server's clock, the
-- one clock every host shares, and keep increasing even when Redis restarts empty
-- and a run's record starts over (the database row keeps the last version).
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
flat[#flat + 1] = 'version'
flat[#flat + 1] = string.format('%d', math.max(version + 1, tonumber(clock[1]) * 1000000 + tonumber(clock[2])))
redis.call('HSET', KEYS[1], unpack(flat))

local meta = redis.call('HMGET', KEYS[1], 'subject', 'owner', 'team', 'status', 'attempts', 'next_attempt_at')
local subject, owner, team = meta[1], meta[2] or '', meta[3] or ''
local prefix = ARGV[9]
local subject_key = false
local for_subject = false
if subject and subject ~= '' then
  if flag('c') then
    for_subject = {subject = subject, owner = owner, team = team, events = {}}
  else
    subject_key = prefix .. ':events:subject:' .. subject
  end
end

local ids = {}
for _, ev in ipairs(cjson.decode(ARGV[8])) do
  local kind, body = ev[1], ev[2]
  if kind == 'state' then
    -- The status is the one this script settled on, not the caller's guess.
    local data = cjson.decode(body)
    data['status'] = meta[4]
    data['attempts'] = tonumber(meta[5] or '0')
    data['generation'] = gen
    -- A retry's time is known to its publish, which comes first: say it here too.
    if data['next_attempt_at'] == nil and meta[6] and meta[6] ~= '' and meta[4] == 'RETRYING' then
      data['next_attempt_at'] = tonumber(meta[6])
    end
    body = cjson.encode(data)
  end
  local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[10], '*', 'kind', kind, 'data', body)
  ids[#ids + 1] = id
  redis.call('PUBLISH', prefix .. ':ch:run:' .. ARGV[1], id .. '\31' .. kind .. '\31' .. body)
  if for_subject then
    for_subject['events'][#for_subject['events'] + 1] = {kind, body}
  elseif subject_key then
    local sid = redis.call('XADD', subject_key, 'MAXLEN', '~', ARGV[11], '*',
      'kind', kind, 'data', body, 'owner', owner, 'team', team)
    redis.call('EXPIRE', subject_key, ARGV[13])
    redis.call('PUBLISH', prefix .. ':ch:subject:' .. subject,
      sid .. '\31' .. kind .. '\31' .. body .. '\31' .. owner .. '\31' .. team)
  end
  local fid = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[12], '*',
    'kind', kind, 'data', body, 'owner', owner, 'team', team)
  redis.call('PUBLISH', prefix .. ':ch:firehose',
    fid .. '\31' .. kind .. '\31' .. body .. '\31' .. owner .. '\31' .. team)
end

-- Which runs each worker is executing, for detecting runs lost with their worker.
local active = prefix .. ':active:'
if op == 'start' then
  if cur[3] and cur[3] ~= '' then redis.call('SREM', active .. cur[3], ARGV[1]) end
  if fields['worker'] and fields['worker'] ~= '' then redis.call('SADD', active .. fields['worker'], ARGV[1]) end
elseif (op == 'retry' or FINISHED[meta[4]]) and cur[3] and cur[3] ~= '' then
  redis.call('SREM', active .. cur[3], ARGV[1])
end
if op == 'cancel' then
  redis.call('ZADD', prefix .. ':cancels', ARGV[5], ARGV[1])
  redis.call('PUBLISH', prefix .. ':ch:cancels', ARGV[1])
end
-- Runs waiting in a queue, for the sweep that settles those the broker lost.
if meta[4] == 'READY' or meta[4] == 'RETRYING' then
  redis.call('ZADD', prefix .. ':waiting', string.format('%.6f', now), ARGV[1])
else
  redis.call('ZREM', prefix .. ':waiting', ARGV[1])
end

-- Due for the flusher: at once when the run ends, after a short delay otherwise, so a
-- quick run is written once instead of at every step. LT also pulls a run that a
-- flusher has leased back to due when it changes again.
local due = now
if not FINISHED[meta[4]] then due = due + tonumber(ARGV[14]) end
redis.call('ZADD', KEYS[4], 'LT', string.format('%.6f', due), ARGV[1])
if FINISHED[meta[4]] and not (exists and FINISHED[cur[1]]) then
  -- A durable count of finished runs by task and status (Prometheus counters).
  redis.call('HINCRBY', prefix .. ':stats:finished', (redis.call('HGET', KEYS[1], 'task') or '') .. '|' .. meta[4], 1)
end
-- Latency histograms (Prometheus), counted here once per run so that every web process
-- serves the same cumulative numbers: queue wait at the first start of a run whose
-- publish was recorded (eager runs never waited), runtime of the attempt that
-- succeeded. One field per bucket; readers cumulate.
local function observe(name, from, to)
  local t = redis.call('HMGET', KEYS[1], 'task', 'queue', from, to)
  local a, b = tonumber(t[3] or ''), tonumber(t[4] or '')
  if not a or not b then return end
  local seconds = math.max(0, b - a)
  local le = '+Inf'
  for bound in string.gmatch(ARGV[19], '[^,]+') do
    if seconds <= tonumber(bound) then le = bound; break end
  end
  local key = prefix .. ':stats:' .. name
  local label = (t[1] or '') .. '|' .. (t[2] or '') .. '|'
  redis.call('HINCRBY', key, label .. le, 1)
  redis.call('HINCRBYFLOAT', key, label .. 'sum', string.format('%.6f', seconds))
end
if first_start and exists and not flag('e') then observe('queue_wait', 'enqueued_at', 'started_at') end
if meta[4] == 'SUCCESSFUL' and not (exists and FINISHED[cur[1]]) then
  observe('runtime', 'last_attempted_at', 'finished_at')
end
if FINISHED[meta[4]] then
  redis.call('EXPIRE', KEYS[1], ARGV[13])
  redis.call('EXPIRE', KEYS[2], ARGV[13])
end
local cancel = 0
if cur[4] or apply['cancel_requested_at'] or create['cancel_requested_at'] then cancel = 1 end
local finished = false
if FINISHED[meta[4]] and flag('j') then
  -- The whole record of a finished run, for the caller's journal (journal.py): the
  -- database must get it even if this Redis forgets it before the flusher runs.
  local all = redis.call('HGETALL', KEYS[1])
  local record = {}
  for i = 1, #all, 2 do record[all[i]] = all[i + 1] end
  finished = cjson.encode(record)
end
if for_subject then for_subject = cjson.encode(for_subject) end
return {ids, cancel, gen, 1, finished, for_subject}
