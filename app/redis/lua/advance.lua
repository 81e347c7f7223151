-- ARGV: now, max batch[, force N: admit up to N now, ignoring the rate but not max_active].
-- Expires lapsed admissions, then admits from the front at the token-bucket rate and under the
-- max_active cap, skipping abandoned places.
-- reply: {status, lapsed, abandoned, admitted_count, observed seconds, served, capacity_bound,
--         admit_per_minute, max_active, window, user1, joined1, notifiable1, until1, user2, ...}
-- (observed seconds and served feed the wait estimate: app/queue/eta.py)
-- KEYS[15]: the notices owed (QueueKeys.notices_due): a notifiable user admitted here is owed one.
--! include prelude
local now, max_batch, force = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3] or '0')
if redis.call('EXISTS', K_META) == 0 then return {'no_meta', 0, 0, 0, 0, 0, 0, 0, 0, 0} end
local m = redis.call('HMGET', K_META, 'admit_per_minute', 'max_active', 'window', 'heartbeat_timeout',
                     'opens_at', 'paused', 'shuffled', 'starts_at', 'first_opens_at', 'lanes')
local function header(status, lapsed_n)
  return {status, lapsed_n, 0, 0, 0, 0, 0, m[1], m[2], m[3]}
end
local per_second, max_active, window = tonumber(m[1]) / 60, tonumber(m[2]), tonumber(m[3])
local hb_timeout, opens_at, paused, shuffled = tonumber(m[4]), tonumber(m[5]), m[6] == '1', m[7] == '1'
-- the first opening: a lane's (app/queue/lanes.py) may come before the sale's own
local first_opens_at = math.min(opens_at, tonumber(m[9] or '') or opens_at)

local lapsed = redis.call('ZRANGEBYSCORE', K_ACTIVE, '-inf', now)
for _, user in ipairs(lapsed) do
  redis.call('ZREM', K_ACTIVE, user)
  redis.call('HSET', K_EXPIRED, user, 'window_lapsed')
  emit('AdmissionExpired', user, 'reason', 'window_lapsed', now)
end
if #lapsed > 0 then redis.call('HINCRBY', K_STATS, 'expired_total', #lapsed) end
-- the event has started and nobody is left: the caller stops advancing this sale
if m[8] and m[8] ~= '' and now > tonumber(m[8]) and redis.call('ZCARD', K_LINE) == 0
   and redis.call('ZCARD', K_LANES) == 0 and redis.call('SCARD', K_PRE) == 0 and redis.call('ZCARD', K_ACTIVE) == 0 then
  return header('ended', #lapsed)
end

local s = redis.call('HMGET', K_STATS, 'tokens', 'bucket_ts', 'rate_ewma', 'rate_ts', 'acc_n', 'acc_t')
if (paused and force == 0) or now < first_opens_at then
  -- no credit accumulates while nobody may be admitted, and the time is not line speed: the
  -- measurement resumes from now, with the active set as it is now
  redis.call('HSET', K_STATS, 'bucket_ts', now, 'rate_ts', now, 'active_after', redis.call('ZCARD', K_ACTIVE))
  return header(paused and 'paused' or 'not_open', #lapsed)
end
if not shuffled then return header('needs_shuffle', #lapsed) end

-- token bucket: smooth admissions, at most one second's worth (and at least one) at once
local burst = math.max(1, per_second)
local tokens = tonumber(s[1]) or burst
local bucket_ts = tonumber(s[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - bucket_ts) * per_second)
local active_now = redis.call('ZCARD', K_ACTIVE)
local slots = max_active - active_now
local budget = math.min(math.floor(tokens), slots, max_batch)
if force > 0 then budget = math.min(force, slots) end
local line_before = redis.call('ZCARD', K_LINE) + redis.call('ZCARD', K_LANES)
-- admitted users who left since the last tick (bought, cancelled, left, lapsed): when the slots
-- and not the tokens limit admissions, the line moves exactly as fast as they leave
local active_before = tonumber(redis.call('HGET', K_STATS, 'active_after') or active_now)
local departures = math.max(0, active_before - active_now)
local capacity_bound = force == 0 and slots < math.floor(tokens)

local out = header('ok', #lapsed)
local admitted, abandoned, scanned = 0, 0, 0
-- the line number of the last place taken off the front (admitted or abandoned): the public
-- "served up to" figure (app/queue/services.serving)
local served_up_to = nil

-- Which line the next admission comes from. With no lanes, the general line's front. With lanes,
-- start-time fair queueing over the lines that are open and not empty: each lane is served at its
-- share of the admissions and the general line at the rest, a line's unused share going to the
-- others. A line's next start tag is its last one plus 1/share, or the virtual time (the start tag
-- served last) if that is later: a line that was empty or closed saves up no burst. The smallest
-- start tag goes first.
local lanes = lanes_of(m[10])
local lines = {}
for _, lane in ipairs(lanes) do
  local low = lane.index * LANE_BAND - LANE_BAND / 2
  table.insert(lines, {name = lane.name, share = lane.share, opens_at = lane.opens_at, low = low,
                       high = '(' .. (low + LANE_BAND), tag = 'vf:' .. lane.name})
end
table.insert(lines, {name = '', share = general_share(lanes), opens_at = opens_at, tag = 'vf:'})
local vt = tonumber(redis.call('HGET', K_STATS, 'vt') or '0')
local function front(line)
  if line.name == '' then return redis.call('ZRANGE', K_LINE, 0, 0, 'WITHSCORES') end
  return redis.call('ZRANGEBYSCORE', K_LANES, line.low, line.high, 'WITHSCORES', 'LIMIT', 0, 1)
end
local function next_place()
  if #lanes == 0 then
    local popped = redis.call('ZPOPMIN', K_LINE)
    if #popped == 0 then return nil end
    return popped[1], popped[2], ''
  end
  local best, best_start, best_front = nil, nil, nil
  for _, line in ipairs(lines) do
    if now >= line.opens_at then
      local head = front(line)
      if #head > 0 then
        local start = math.max(tonumber(redis.call('HGET', K_STATS, line.tag) or '0'), vt)
        if not best or start < best_start then best, best_start, best_front = line, start, head end
      end
    end
  end
  if not best then return nil end
  vt = best_start
  redis.call('HSET', K_STATS, best.tag, tostring(best_start + 1 / best.share))
  if best.name == '' then
    redis.call('ZREM', K_LINE, best_front[1])
    return best_front[1], best_front[2], ''
  end
  redis.call('ZREM', K_LANES, best_front[1])
  return best_front[1], string.format('%d', tonumber(best_front[2]) - (best.low + LANE_BAND / 2)), best.name
end

while admitted < budget and scanned < budget * 4 + 100 do
  local user, number, lane_name = next_place()
  if not user then break end
  scanned = scanned + 1
  if lane_name == '' then served_up_to = number else
    redis.call('HSET', K_STATS, 'served_up_to:' .. lane_name, number)
  end
  local seen = tonumber(redis.call('HGET', K_HB, user) or '0')
  local notifiable = redis.call('SISMEMBER', K_NOTIF, user)
  local joined = redis.call('HGET', K_JOINED, user) or tostring(now)
  redis.call('HDEL', K_HB, user)
  redis.call('HDEL', K_JOINED, user)
  if now - seen > hb_timeout and notifiable == 0 then
    redis.call('HSET', K_EXPIRED, user, 'abandoned')
    emit('AdmissionExpired', user, 'reason', 'abandoned', now)
    abandoned = abandoned + 1
  else
    local until_ = now + window
    redis.call('ZADD', K_ACTIVE, until_, user)
    emit('UserAdmitted', user, 'admitted_until', until_, now)
    -- owed durably in this same call: the notice survives a lost task (app/notifications/flows.py)
    if notifiable == 1 then redis.call('HSET', KEYS[15], user, tostring(until_) .. '|' .. tostring(now)) end
    admitted = admitted + 1
    if lane_name ~= '' then redis.call('HINCRBY', K_STATS, 'admitted:' .. lane_name, 1) end
    table.insert(out, user)
    table.insert(out, joined)
    table.insert(out, notifiable)
    table.insert(out, tostring(until_))
  end
end
if #lanes > 0 then redis.call('HSET', K_STATS, 'vt', tostring(vt)) end
if force == 0 then tokens = tokens - admitted end
redis.call('HSET', K_STATS, 'tokens', tokens, 'bucket_ts', now)
if served_up_to then redis.call('HSET', K_STATS, 'served_up_to', served_up_to) end
if admitted > 0 then redis.call('HINCRBY', K_STATS, 'admitted_total', admitted) end
if abandoned > 0 then redis.call('HINCRBY', K_STATS, 'expired_total', abandoned) end

-- measured admission rate (per minute): admissions are accumulated over >= 1 s of time in which
-- people were waiting (it measures what the line delivers, not how many showed up), and each such
-- sample feeds an EWMA with a 30 s time constant; the first sample seeds it
local rate_ts, acc_n, acc_t = tonumber(s[4]), tonumber(s[5]) or 0, tonumber(s[6]) or 0
if line_before > 0 and rate_ts and now > rate_ts and force == 0 then
  out[5] = tostring(now - rate_ts)
  -- the burst that fills free slots is not speed: count only admissions that replaced departures
  out[6] = capacity_bound and math.min(admitted, departures) or admitted
end
out[7] = capacity_bound and 1 or 0
if line_before > 0 and rate_ts and now > rate_ts then
  acc_n = acc_n + admitted
  acc_t = acc_t + (now - rate_ts)
  if acc_t >= 1 then
    local sample = acc_n / acc_t * 60
    local ewma = tonumber(s[3])
    if ewma == nil then
      ewma = sample
    else
      ewma = ewma + (1 - math.exp(-acc_t / 30)) * (sample - ewma)
    end
    redis.call('HSET', K_STATS, 'rate_ewma', tostring(ewma))
    acc_n, acc_t = 0, 0
  end
end
redis.call('HSET', K_STATS, 'acc_n', acc_n, 'acc_t', tostring(acc_t))
redis.call('HSET', K_STATS, 'rate_ts', now, 'active_after', redis.call('ZCARD', K_ACTIVE))
out[3] = abandoned
out[4] = admitted
return out
