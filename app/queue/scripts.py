"""Lua scripts of the waiting room. Each hot-path state change is one script call: atomic, one
round trip, and every key passed explicitly and sharing the sale's hash tag (Redis Cluster safe).

Key order shared by all scripts (see ``keys.QueueKeys.all``):
  1 meta  2 line  3 pre  4 joined  5 hb  6 active  7 notifiable  8 expired  9 seq  10 stats
  11 events  12 rate-limit counter of the calling user (join/status only)
  13 the caller's access-token revocation key (join/status; a key in the sale's slot when none)
  14 the user's device cache, 15 the user's set of joined sales (join only)
Keys 13-15 are the user's, not the sale's: join and status answer in one round trip on one Redis;
a Redis Cluster deployment has to move them into the sale's slot or read them separately.
"""

from __future__ import annotations

# Shared Lua helpers. ``view`` answers "where is this user" without changing anything.
_PRELUDE = r"""
local K_META, K_LINE, K_PRE, K_JOINED, K_HB, K_ACTIVE = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local K_NOTIF, K_EXPIRED, K_SEQ, K_STATS, K_EVENTS = KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11]
local STREAM_MAX = 1000000

local function emit(kind, user, extra_k, extra_v, now)
  if extra_k then
    redis.call('XADD', K_EVENTS, 'MAXLEN', '~', STREAM_MAX, '*', 'type', kind, 'user_id', user, 'at', now,
               extra_k, extra_v)
  else
    redis.call('XADD', K_EVENTS, 'MAXLEN', '~', STREAM_MAX, '*', 'type', kind, 'user_id', user, 'at', now)
  end
end

local function view(user, now)
  local until_ = redis.call('ZSCORE', K_ACTIVE, user)
  if until_ then
    if tonumber(until_) > now then return {'admitted', -1, until_} end
    return {'expired', -1, 'window_lapsed'}
  end
  local rank = redis.call('ZRANK', K_LINE, user)
  if rank then return {'waiting', rank, ''} end
  if redis.call('SISMEMBER', K_PRE, user) == 1 then return {'pre_queue', -1, ''} end
  local reason = redis.call('HGET', K_EXPIRED, user)
  if reason then return {'expired', -1, reason} end
  return {'not_in_queue', -1, ''}
end

-- reply: state, rank, detail, published line speed/s (app/queue/eta.py), paused, pre-queue size,
--        created, configured rate/min, heartbeat timeout, opens_at, the speed's relative
--        uncertainty (everything the estimate needs: one trip)
local function reply(user, now, created)
  local v = view(user, now)
  local eta = redis.call('HMGET', K_STATS, 'eta_rate', 'eta_rel')
  local m = redis.call('HMGET', K_META, 'paused', 'admit_per_minute', 'heartbeat_timeout', 'opens_at')
  return {v[1], v[2], v[3], eta[1] or '0', m[1] or '0', redis.call('SCARD', K_PRE), created, m[2] or '1',
          m[3] or '60', m[4] or '0', eta[2] or '1'}
end

local function rate_limited(limit)
  if limit <= 0 then return nil end  -- unmetered caller (the SSE stream paces itself)
  local n = redis.call('INCR', KEYS[12])
  if n == 1 then redis.call('PEXPIRE', KEYS[12], 1000) end
  if n > limit then return redis.call('PTTL', KEYS[12]) end
  return nil
end
"""

# ARGV: user, now, rate limit per second, event id, proof-of-work nonce ('' when none was sent)
JOIN = _PRELUDE + r"""
local user, now, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if redis.call('EXISTS', KEYS[13]) == 1 then return {'token_revoked'} end
if redis.call('EXISTS', K_META) == 0 then return {'no_meta'} end
local wait_ms = rate_limited(limit)
if wait_ms then return {'rate_limited', wait_ms} end
local meta = redis.call('HMGET', K_META, 'prequeue_opens_at', 'opens_at', 'closes_at', 'shuffled', 'pow_difficulty')
-- proof of work (hashcash): SHA-1 of "<event>:<user>:<nonce>" must start with `difficulty` zero
-- bits, so every account a bot adds costs it CPU time; the same nonce stays valid for re-joins
local difficulty = tonumber(meta[5] or '0') or 0
if difficulty > 0 then
  local digest = redis.sha1hex(ARGV[4] .. ':' .. user .. ':' .. (ARGV[5] or ''))
  local zeros = 0
  for i = 1, #digest do
    local v = tonumber(string.sub(digest, i, i), 16)
    if v == 0 then
      zeros = zeros + 4
    else
      if v == 1 then zeros = zeros + 3 elseif v <= 3 then zeros = zeros + 2 elseif v <= 7 then zeros = zeros + 1 end
      break
    end
    if zeros >= difficulty then break end
  end
  if (ARGV[5] or '') == '' or zeros < difficulty then return {'pow_required', difficulty} end
end
if now < tonumber(meta[1]) then return {'not_open', meta[1]} end
if meta[3] and meta[3] ~= '' and now >= tonumber(meta[3]) then return {'closed', meta[3]} end
-- registering a channel later marks every sale in this set notifiable
redis.call('SADD', KEYS[15], ARGV[4])
if redis.call('EXISTS', KEYS[14]) == 1 then redis.call('SADD', K_NOTIF, user) end
local v = view(user, now)
local state = v[1]
if state == 'admitted' or state == 'waiting' or state == 'pre_queue' then
  redis.call('HSET', K_HB, user, now)
  return reply(user, now, 0)
end
-- a new place: a lapsed admission is closed first so the slot and the counters stay honest
if redis.call('ZREM', K_ACTIVE, user) == 1 then
  redis.call('HINCRBY', K_STATS, 'expired_total', 1)
  emit('AdmissionExpired', user, 'reason', 'window_lapsed', now)
end
redis.call('HDEL', K_EXPIRED, user)
if now < tonumber(meta[2]) and meta[4] ~= '1' then
  redis.call('SADD', K_PRE, user)
else
  redis.call('ZADD', K_LINE, redis.call('INCR', K_SEQ), user)
end
redis.call('HSET', K_JOINED, user, now)
redis.call('HSET', K_HB, user, now)
redis.call('HINCRBY', K_STATS, 'joined_total', 1)
emit('QueueJoined', user, nil, nil, now)
return reply(user, now, 1)
"""

# ARGV: user, now, rate limit per second (0: unmetered). Polling is the heartbeat that keeps a place alive.
STATUS = _PRELUDE + r"""
local user, now, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if redis.call('EXISTS', KEYS[13]) == 1 then return {'token_revoked'} end
if redis.call('EXISTS', K_META) == 0 then return {'no_meta'} end
local wait_ms = rate_limited(limit)
if wait_ms then return {'rate_limited', wait_ms} end
if redis.call('HEXISTS', K_JOINED, user) == 1 then redis.call('HSET', K_HB, user, now) end
return reply(user, now, 0)
"""

# ARGV: user, now, event type (QueueLeft | AdmissionReleased). Frees a place or an active slot.
LEAVE = _PRELUDE + r"""
local user, now, kind = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local removed = redis.call('ZREM', K_LINE, user) + redis.call('SREM', K_PRE, user)
  + redis.call('ZREM', K_ACTIVE, user)
redis.call('HDEL', K_JOINED, user)
redis.call('HDEL', K_HB, user)
if removed > 0 then emit(kind, user, nil, nil, now) end
return removed
"""

# ARGV: now, user ids in the random order drawn by the caller. Runs once per sale (flag).
SHUFFLE = _PRELUDE + r"""
if redis.call('HGET', K_META, 'shuffled') == '1' then return -1 end
local now = tonumber(ARGV[1])
local n = #ARGV - 1
local placed = 0
for i = 2, #ARGV do
  local user = ARGV[i]
  if redis.call('SREM', K_PRE, user) == 1 then
    -- negative scores put the whole pre-queue, in drawn order, ahead of every later arrival
    redis.call('ZADD', K_LINE, (i - 1) - n - 1, user)
    placed = placed + 1
  end
end
-- anyone who joined the pre-queue after the caller read it goes behind the drawn block
for _, user in ipairs(redis.call('SMEMBERS', K_PRE)) do
  redis.call('ZADD', K_LINE, -1 + 1 / (placed + 2), user)
  placed = placed + 1
end
redis.call('DEL', K_PRE)
redis.call('HSET', K_META, 'shuffled', '1')
if placed > 0 then
  redis.call('XADD', K_EVENTS, 'MAXLEN', '~', STREAM_MAX, '*', 'type', 'PreQueueShuffled', 'user_id', '',
             'at', now, 'count', placed)
end
return placed
"""

# ARGV: now, max batch[, force N: admit up to N now, ignoring the rate but not max_active].
# Expires lapsed admissions, then admits from the front at the token-bucket rate and under the
# max_active cap, skipping abandoned places.
# reply: {status, lapsed, abandoned, admitted_count, observed seconds, served, capacity_bound,
#         admit_per_minute, max_active, window, user1, joined1, notifiable1, until1, user2, ...}
# (observed seconds and served feed the wait estimate: app/queue/eta.py)
ADVANCE = _PRELUDE + r"""
local now, max_batch, force = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3] or '0')
if redis.call('EXISTS', K_META) == 0 then return {'no_meta', 0, 0, 0, 0, 0, 0, 0, 0, 0} end
local m = redis.call('HMGET', K_META, 'admit_per_minute', 'max_active', 'window', 'heartbeat_timeout',
                     'opens_at', 'paused', 'shuffled', 'starts_at')
local function header(status, lapsed_n)
  return {status, lapsed_n, 0, 0, 0, 0, 0, m[1], m[2], m[3]}
end
local per_second, max_active, window = tonumber(m[1]) / 60, tonumber(m[2]), tonumber(m[3])
local hb_timeout, opens_at, paused, shuffled = tonumber(m[4]), tonumber(m[5]), m[6] == '1', m[7] == '1'

local lapsed = redis.call('ZRANGEBYSCORE', K_ACTIVE, '-inf', now)
for _, user in ipairs(lapsed) do
  redis.call('ZREM', K_ACTIVE, user)
  redis.call('HSET', K_EXPIRED, user, 'window_lapsed')
  emit('AdmissionExpired', user, 'reason', 'window_lapsed', now)
end
if #lapsed > 0 then redis.call('HINCRBY', K_STATS, 'expired_total', #lapsed) end
-- the event has started and nobody is left: the caller stops advancing this sale
if m[8] and m[8] ~= '' and now > tonumber(m[8]) and redis.call('ZCARD', K_LINE) == 0
   and redis.call('SCARD', K_PRE) == 0 and redis.call('ZCARD', K_ACTIVE) == 0 then
  return header('ended', #lapsed)
end

local s = redis.call('HMGET', K_STATS, 'tokens', 'bucket_ts', 'rate_ewma', 'rate_ts', 'acc_n', 'acc_t')
if (paused and force == 0) or now < opens_at then
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
local line_before = redis.call('ZCARD', K_LINE)
-- admitted users who left since the last tick (bought, cancelled, left, lapsed): when the slots
-- and not the tokens limit admissions, the line moves exactly as fast as they leave
local active_before = tonumber(redis.call('HGET', K_STATS, 'active_after') or active_now)
local departures = math.max(0, active_before - active_now)
local capacity_bound = force == 0 and slots < math.floor(tokens)

local out = header('ok', #lapsed)
local admitted, abandoned, scanned = 0, 0, 0
while admitted < budget and scanned < budget * 4 + 100 do
  local front = redis.call('ZPOPMIN', K_LINE)
  if #front == 0 then break end
  scanned = scanned + 1
  local user = front[1]
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
    admitted = admitted + 1
    table.insert(out, user)
    table.insert(out, joined)
    table.insert(out, notifiable)
    table.insert(out, tostring(until_))
  end
end
if force == 0 then tokens = tokens - admitted end
redis.call('HSET', K_STATS, 'tokens', tokens, 'bucket_ts', now)
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
"""
