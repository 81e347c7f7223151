"""Every Lua script of the application, and one registry that loads each once per client.

Waiting room (JOIN, STATUS, LEAVE, SHUFFLE, ADVANCE), booking intake and sold-out gate (RESERVE,
GIVE, RELEASE_HOLD, RESET, SETTLE), waitlist (JOIN_WAITLIST ... CLAIM_OFFER), and the small ones:
OPEN_STREAM (app/queue/streams.py), FORGET_NOTICES (app/notifications/flows.py), CHECK_CODE
(app/verification.py), ROTATE_SESSION (app/auth/sessions.py). Each hot-path state change is one
script call: atomic, one round trip, and every key passed explicitly and sharing the sale's hash
tag (Redis Cluster safe).

Waiting room:

Key order shared by all scripts (see ``keys.QueueKeys.all``):
  1 meta  2 line  3 pre  4 joined  5 hb  6 active  7 notifiable  8 expired  9 seq  10 stats
  11 events  12 rate-limit counter of the calling user (join/status only)
  13 the caller's access-token revocation key (join/status; a key in the sale's slot when none)
  14 the user's device cache, 15 the user's set of joined sales (join only)
Keys 13-15 are the user's, not the sale's: join and status answer in one round trip on one Redis.
In Redis Cluster mode (REDIS_CLUSTER=true) they are read separately before the call
(app/redis/cluster.py) and every script touches the sale's slot only.
"""

from __future__ import annotations

from typing import Any

from app.redis import redis_store

# Shared Lua helpers. ``view`` answers "where is this user" without changing anything.
_PRELUDE = r"""
local K_META, K_LINE, K_PRE, K_JOINED, K_HB, K_ACTIVE = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local K_NOTIF, K_EXPIRED, K_SEQ, K_STATS, K_EVENTS = KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11]
-- the events stream is never trimmed: an event leaves it only once the drain has copied it to
-- the outbox (app/queue/events.py); its lag is a metric with an alert (QueueEventsUndrained)

local function emit(kind, user, extra_k, extra_v, now)
  if extra_k then
    redis.call('XADD', K_EVENTS, '*', 'type', kind, 'user_id', user, 'at', now,
               extra_k, extra_v)
  else
    redis.call('XADD', K_EVENTS, '*', 'type', kind, 'user_id', user, 'at', now)
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

-- JOIN and STATUS: a revoked token, a sale not yet in Redis, or a caller over its rate limit
local function refuse_caller(limit)
  if redis.call('EXISTS', KEYS[13]) == 1 then return {'token_revoked'} end
  if redis.call('EXISTS', K_META) == 0 then return {'no_meta'} end
  local wait_ms = rate_limited(limit)
  if wait_ms then return {'rate_limited', wait_ms} end
  return nil
end
"""

# ARGV: user, now, rate limit per second, event id, proof-of-work nonce ('' when none was sent)
JOIN = _PRELUDE + r"""
local user, now, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local refused = refuse_caller(limit)
if refused then return refused end
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
-- registering a channel later marks every sale in this set notifiable. In cluster mode the
-- user's keys live in other slots: the caller did the SADD and read the device cache before
-- this call, and passes what it read as ARGV[6] ('1' or '0'); KEYS[14], KEYS[15] are absent.
if (ARGV[6] or '') == '' then
  redis.call('SADD', KEYS[15], ARGV[4])
  redis.call('EXPIRE', KEYS[15], 604800)  -- kept a week after the user's last join (keys.RETENTION)
  if redis.call('EXISTS', KEYS[14]) == 1 then redis.call('SADD', K_NOTIF, user) end
elseif ARGV[6] == '1' then
  redis.call('SADD', K_NOTIF, user)
end
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
local refused = refuse_caller(limit)
if refused then return refused end
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
  redis.call('XADD', K_EVENTS, '*', 'type', 'PreQueueShuffled', 'user_id', '',
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
# KEYS[12]: the notices owed (QueueKeys.notices_due): a notifiable user admitted here is owed one.
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
    -- owed durably in this same call: the notice survives a lost task (app/notifications/flows.py)
    if notifiable == 1 then redis.call('HSET', KEYS[12], user, tostring(until_) .. '|' .. tostring(now)) end
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


# ------------------------------------------------------------------------------------------------
# Booking intake, sold-out gate and waitlist. Every key shares the sale's hash tag (``q:{event}:``),
# except the caller's token-revocation key read by RESERVE.

# Shared: units coming back to sale (KEYS: gate, waitlist, waitlist pool, waitlist stats). While
# fans wait on the section's waitlist, the units go to its pool, from which only offers are made
# (app/booking/waitlist.py); otherwise to the gate. Returns the gate's new value, -3 (to the
# waitlist) or -2 (no gate: the reconciler derives it).
_PUT_BACK_FN = r"""
-- a user's live count drops (never below 0); a closed sale's count is gone and is not re-created
local function off_count(units_key, user, n)
  if user == '' or redis.call('EXISTS', units_key) == 0 then return end
  if redis.call('HINCRBY', units_key, user, -n) < 0 then redis.call('HSET', units_key, user, 0) end
end
local function put_back(gate_key, wl_key, pool_key, stats_key, n)
  if n <= 0 then return -1 end
  if redis.call('ZCARD', wl_key) > 0 then
    redis.call('INCRBY', pool_key, n)
    redis.call('HINCRBY', stats_key, 'released', n)
    redis.call('HSETNX', stats_key, 'first_release_at', redis.call('TIME')[1])
    return -3
  end
  if redis.call('EXISTS', gate_key) == 1 then return redis.call('INCRBY', gate_key, n) end
  return -2
end
"""

# Shared: take ``want`` units from the gate (KEYS: gate, holds, waitlist, pool, stats). When short,
# holds whose deadline has passed are reclaimed first (their units are free in MySQL too:
# availability never counts an expired hold, even before the sweeper runs); reclaimed units go to
# the waitlist first, like any release. Returns -2 (no gate yet), -1 (short) or units left.
_TAKE_FN = _PUT_BACK_FN + r"""
local function take(gate_key, holds_key, wl_key, pool_key, stats_key, want, now)
  local v = redis.call('GET', gate_key)
  if not v then return -2 end
  if tonumber(v) < want then
    local back = 0
    for _, member in ipairs(redis.call('ZRANGEBYSCORE', holds_key, '-inf', now, 'LIMIT', 0, 200)) do
      back = back + tonumber(string.match(member, ':(%d+)$'))
      redis.call('ZREM', holds_key, member)
    end
    if back > 0 then
      put_back(gate_key, wl_key, pool_key, stats_key, back)
      v = redis.call('GET', gate_key)
    end
    if tonumber(v) < want then return -1 end
  end
  return redis.call('DECRBY', gate_key, want)
end
"""

# Shared by RESERVE and CLAIM_OFFER, which keep these positions: KEYS 2 idempotency, 3 user
# units, 6 reserve stream, 7 pending records, 8 the access token's revocation key; ARGV 1 user,
# 4 idempotency field, 5 request hash, 6 reservation id, 7 quantity, 8 max per user, 9 record,
# 10 section. accept() also gets the keys of the user's pending ids and the per-section pending units.
_INTAKE_FN = r"""
local function refused_before()
  if redis.call('EXISTS', KEYS[8]) == 1 then return {'token_revoked'} end
  local seen = redis.call('HGET', KEYS[2], ARGV[4])
  if not seen then return nil end
  local rid, digest = string.match(seen, '^([^|]+)|(.+)$')
  if digest ~= ARGV[5] then return {'idempotency_key_reused'} end
  return {'replay', rid}
end
local function over_limit()
  local units = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
  if units + tonumber(ARGV[7]) > tonumber(ARGV[8]) then return {'limit_exceeded', tostring(units)} end
  return nil
end
local function accept(k_pending_of, k_pending_units)
  redis.call('HSET', KEYS[2], ARGV[4], ARGV[6] .. '|' .. ARGV[5])
  redis.call('HINCRBY', KEYS[3], ARGV[1], tonumber(ARGV[7]))
  redis.call('HSET', KEYS[7], ARGV[6], ARGV[9])
  local mine = redis.call('HGET', k_pending_of, ARGV[1])
  redis.call('HSET', k_pending_of, ARGV[1], mine and (mine .. ' ' .. ARGV[6]) or ARGV[6])
  redis.call('HINCRBY', k_pending_units, ARGV[10], tonumber(ARGV[7]))
  redis.call('XADD', KEYS[6], '*', 'r', ARGV[9])
  return {'accepted', ARGV[6]}
end
"""

# The whole accept path of POST /api/tickets/reserve in one call.
# KEYS: 1 active (admissions)  2 idempotency  3 user units  4 gate  5 holds  6 reserve stream
#       7 pending records  8 the access token's revocation key  9 waitlist  10 waitlist pool
#       11 waitlist stats  12 pending ids per user  13 pending units per section
# ARGV: 1 user  2 pass exp  3 now  4 idempotency field  5 request hash  6 reservation id
#       7 quantity  8 max per user  9 request record (JSON)  10 section
# Reply: {outcome[, detail]}; 'accepted' means the request is on the stream (durable in Redis).
RESERVE = _TAKE_FN + _INTAKE_FN + r"""
local early = refused_before()
if early then return early end
local until_ = redis.call('ZSCORE', KEYS[1], ARGV[1])
local now = tonumber(ARGV[3])
if not until_ or tonumber(until_) <= now or math.floor(tonumber(until_)) ~= tonumber(ARGV[2]) then
  return {'admission_inactive'}
end
local limited = over_limit()
if limited then return limited end
local left = take(KEYS[4], KEYS[5], KEYS[9], KEYS[10], KEYS[11], tonumber(ARGV[7]), ARGV[3])
if left == -2 then return {'no_gate'} end
if left == -1 then return {'sold_out'} end
return accept(KEYS[12], KEYS[13])
"""

# KEYS: gate, user units. ARGV: quantity, user (or ''). Units back to the gate (if it exists) and
# off the user's live count.
# KEYS 3-5: the section's waitlist, pool and stats (units go to waiting fans first).
GIVE = _PUT_BACK_FN + r"""
off_count(KEYS[2], ARGV[2], tonumber(ARGV[1]))
return put_back(KEYS[1], KEYS[3], KEYS[4], KEYS[5], tonumber(ARGV[1]))
"""

# The hold writer's follow-up of one batch, after MySQL committed it: all of it or none of it, so a
# crash leaves the entries pending and the re-run rebuilds the same follow-up (app/booking/writer.py).
# KEYS: 1 pending records  2 writes counter  3 reserve stream  4 user units  5 dead letters
#       6 pending ids per user  7 pending units per section, then 5 keys per section the batch
#       touches: gate, holds, waitlist, pool, stats
# ARGV: 1 consumer group  2 JSON {"ack": [entry ids], "done": [[reservation id, user, section, units]],
#       "holds": [[section index (1-based), member, deadline]], "give": [[section index, units, user or ""]],
#       "dead": [[field, value, ...]] (entries for the dead-letter stream)}
SETTLE = _PUT_BACK_FN + r"""
local plan = cjson.decode(ARGV[2])
local function section_key(i, n) return KEYS[7 + (i - 1) * 5 + n] end
for _, h in ipairs(plan['holds'] or {}) do
  redis.call('ZADD', section_key(h[1], 2), h[3], h[2])
end
for _, g in ipairs(plan['give'] or {}) do
  local units = tonumber(g[2])
  off_count(KEYS[4], g[3], units)
  put_back(section_key(g[1], 1), section_key(g[1], 3), section_key(g[1], 4), section_key(g[1], 5), units)
end
for _, d in ipairs(plan['dead'] or {}) do
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', 100000, '*', unpack(d))
end
for _, d in ipairs(plan['done'] or {}) do
  local rid, user = d[1], tostring(d[2])
  if redis.call('HDEL', KEYS[1], rid) == 1 then
    local section = tostring(d[3])
    if redis.call('HINCRBY', KEYS[7], section, -tonumber(d[4])) <= 0 then redis.call('HDEL', KEYS[7], section) end
  end
  local left = {}
  for id in string.gmatch(redis.call('HGET', KEYS[6], user) or '', '%S+') do
    if id ~= rid then table.insert(left, id) end
  end
  if #left > 0 then
    redis.call('HSET', KEYS[6], user, table.concat(left, ' '))
  else
    redis.call('HDEL', KEYS[6], user)
  end
end
redis.call('INCR', KEYS[2])
if #(plan['ack'] or {}) > 0 then
  redis.call('XACK', KEYS[3], ARGV[1], unpack(plan['ack']))
  redis.call('XDEL', KEYS[3], unpack(plan['ack']))
end
return #(plan['ack'] or {})
"""

# KEYS: gate, holds, user units. ARGV: member, give back (0|1), user. A hold's units return to the
# gate at most once: either here (expiry/cancel) or when TAKE reclaimed them after the deadline.
# The user's live count drops on every expiry/cancel (MySQL moves a hold out of `held` once).
# KEYS 4-6: the section's waitlist, pool and stats.
RELEASE_HOLD = _PUT_BACK_FN + r"""
local removed = redis.call('ZREM', KEYS[2], ARGV[1])
if ARGV[2] ~= '1' then return -1 end
local qty = tonumber(string.match(ARGV[1], ':(%d+)$'))
off_count(KEYS[3], ARGV[3], qty)
if removed == 1 then return put_back(KEYS[1], KEYS[4], KEYS[5], KEYS[6], qty) end
return -1
"""

# KEYS: gate, holds, pending records, writes counter. ARGV: expected units, now, writes counter as
# read before MySQL was. Resets only when no request is between the API and MySQL and no hold
# writer committed meanwhile: otherwise MySQL's count and Redis's could describe different moments.
# KEYS 5-6: the waitlist's pool and the units in open offers: MySQL counts them free, but they are
# kept for waiting fans, so the gate gets the rest.
RESET = r"""
if redis.call('HLEN', KEYS[3]) > 0 or (redis.call('GET', KEYS[4]) or '0') ~= ARGV[3] then
  return {'busy'}
end
local previous = redis.call('GET', KEYS[1])
local kept = tonumber(redis.call('GET', KEYS[5]) or '0') + tonumber(redis.call('GET', KEYS[6]) or '0')
local value = math.max(0, tonumber(ARGV[1]) - kept)
redis.call('SET', KEYS[1], value)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
-- the drift is the gate's change: the value set, not MySQL's count before the waitlist's share
return {'reset', previous or false, value}
"""


# --- the waitlist (app/booking/waitlist.py) ---------------------------------------------------------
# Keys of one section, all in the sale's slot: WL (zset user -> arrival number), WLQ (user ->
# quantity), POOL (units released while fans wait), OFFERS (offer id -> "user:qty:expires"),
# OFFEREXP (zset offer id -> expiry), USEROFFER (user -> offer id), OFFERED (units in open offers),
# SEQ (arrival and offer numbers), STATS, FRESH (set: offers not yet announced).

# KEYS: 1 active  2 gate  3 WL  4 WLQ  5 SEQ  6 user units  7 USEROFFER  8 POOL
# ARGV: user, now, quantity, max per user
# Reply: {'joined'|'already', position} | {'offered'} | {'admission_inactive'} | {'not_sold_out'} |
#        {'limit_exceeded', units}
JOIN_WAITLIST = r"""
if redis.call('HEXISTS', KEYS[7], ARGV[1]) == 1 then return {'offered'} end
local rank = redis.call('ZRANK', KEYS[3], ARGV[1])
if rank then return {'already', rank + 1} end
local until_ = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not until_ or tonumber(until_) <= tonumber(ARGV[2]) then return {'admission_inactive'} end
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then return {'not_sold_out'} end
local units = tonumber(redis.call('HGET', KEYS[6], ARGV[1]) or '0')
if units + tonumber(ARGV[3]) > tonumber(ARGV[4]) then return {'limit_exceeded', tostring(units)} end
redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[5]), ARGV[1])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[3])
return {'joined', redis.call('ZRANK', KEYS[3], ARGV[1]) + 1}
"""

# KEYS: WL, WLQ. ARGV: user. 1 when the fan was waiting.
LEAVE_WAITLIST = r"""
redis.call('HDEL', KEYS[2], ARGV[1])
return redis.call('ZREM', KEYS[1], ARGV[1])
"""

# Offers from the pool, in arrival order. A fan who wants more than the pool holds is skipped and
# keeps their place (the next release may fit them); a smaller request behind them is served.
# Whatever is left once nobody waits opens to everyone (the gate).
# KEYS: 1 WL  2 WLQ  3 POOL  4 OFFERS  5 OFFEREXP  6 USEROFFER  7 OFFERED  8 SEQ  9 gate  10 FRESH
# ARGV: now, window seconds, most fans scanned
# Reply: flat list user, offer id, quantity, expires, ...
MAKE_OFFERS = r"""
local pool = tonumber(redis.call('GET', KEYS[3]) or '0')
local made = {}
if pool > 0 then
  local expires = tonumber(ARGV[1]) + tonumber(ARGV[2])
  for _, user in ipairs(redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1)) do
    if pool <= 0 then break end
    local q = tonumber(redis.call('HGET', KEYS[2], user) or '0')
    if q > 0 and q <= pool then
      pool = pool - q
      redis.call('ZREM', KEYS[1], user)
      redis.call('HDEL', KEYS[2], user)
      local offer = 'o' .. redis.call('INCR', KEYS[8])
      redis.call('HSET', KEYS[4], offer, user .. ':' .. q .. ':' .. expires)
      redis.call('ZADD', KEYS[5], expires, offer)
      redis.call('HSET', KEYS[6], user, offer)
      redis.call('INCRBY', KEYS[7], q)
      redis.call('SADD', KEYS[10], offer)
      table.insert(made, user); table.insert(made, offer); table.insert(made, q); table.insert(made, tostring(expires))
    end
  end
  redis.call('SET', KEYS[3], pool)
end
if pool > 0 and redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('SET', KEYS[3], 0)
  if redis.call('EXISTS', KEYS[9]) == 1 then redis.call('INCRBY', KEYS[9], pool) end
end
return made
"""

# Offers past their end go back to the pool (or to the gate when nobody waits).
# KEYS: 1 OFFERS  2 OFFEREXP  3 USEROFFER  4 OFFERED  5 gate  6 WL  7 POOL  8 STATS  9 FRESH
# ARGV: now. Reply: flat list user, offer id, quantity, ...
EXPIRE_OFFERS = _PUT_BACK_FN + r"""
local gone = {}
for _, offer in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 500)) do
  local value = redis.call('HGET', KEYS[1], offer)
  redis.call('ZREM', KEYS[2], offer)
  redis.call('SREM', KEYS[9], offer)
  if value then
    local user, q = string.match(value, '^(%d+):(%d+):')
    redis.call('HDEL', KEYS[1], offer)
    if redis.call('HGET', KEYS[3], user) == offer then redis.call('HDEL', KEYS[3], user) end
    redis.call('DECRBY', KEYS[4], q)
    put_back(KEYS[5], KEYS[6], KEYS[7], KEYS[8], tonumber(q))
    table.insert(gone, user); table.insert(gone, offer); table.insert(gone, q)
  end
end
return gone
"""

# A fan declines (or leaves with) an open offer: its units pass on at once.
# KEYS: 1 OFFERS  2 OFFEREXP  3 USEROFFER  4 OFFERED  5 gate  6 WL  7 POOL  8 STATS  9 FRESH
# ARGV: user. Reply: the quantity given back (0: no open offer).
DECLINE_OFFER = _PUT_BACK_FN + r"""
local offer = redis.call('HGET', KEYS[3], ARGV[1])
if not offer then return 0 end
local value = redis.call('HGET', KEYS[1], offer)
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[2], offer)
redis.call('SREM', KEYS[9], offer)
if not value then return 0 end
redis.call('HDEL', KEYS[1], offer)
local q = tonumber(string.match(value, '^%d+:(%d+):'))
redis.call('DECRBY', KEYS[4], q)
put_back(KEYS[5], KEYS[6], KEYS[7], KEYS[8], q)
return q
"""

# The accept path of a reserve that claims a waitlist offer: RESERVE's checks, but the units come
# from the offer (not the gate) and no admission is needed; what the fan leaves of the offer passes on.
# KEYS: 1 OFFERS  2 idempotency  3 user units  4 OFFEREXP  5 USEROFFER  6 reserve stream  7 pending
#       8 revocation key  9 OFFERED  10 gate  11 WL  12 POOL  13 STATS  14 FRESH
#       15 pending ids per user  16 pending units per section
# ARGV: 1 user  2 offer id  3 now  4 idempotency field  5 request hash  6 reservation id
#       7 quantity  8 max per user  9 request record (JSON)  10 section
CLAIM_OFFER = _PUT_BACK_FN + _INTAKE_FN + r"""
local early = refused_before()
if early then return early end
local value = redis.call('HGET', KEYS[1], ARGV[2])
if not value then return {'offer_gone'} end
local user, offered, expires = string.match(value, '^(%d+):(%d+):(.+)$')
if user ~= ARGV[1] then return {'offer_gone'} end
if tonumber(expires) <= tonumber(ARGV[3]) then return {'offer_gone'} end
local qty = tonumber(ARGV[7])
offered = tonumber(offered)
if qty > offered then return {'more_than_offered', tostring(offered)} end
local limited = over_limit()
if limited then return limited end
redis.call('HDEL', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[2])
redis.call('HDEL', KEYS[5], ARGV[1])
redis.call('SREM', KEYS[14], ARGV[2])
redis.call('DECRBY', KEYS[9], offered)
if offered > qty then put_back(KEYS[10], KEYS[11], KEYS[12], KEYS[13], offered - qty) end
return accept(KEYS[15], KEYS[16])
"""


# ------------------------------------------------------------------------------------------------
# An SSE stream's lease (app/queue/streams.py). KEYS: user's streams, sale's streams.
# ARGV: stream id, now, lease expiry, user cap, sale cap
OPEN_STREAM = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 'user' end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then return 'event' end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local ttl = math.ceil(tonumber(ARGV[3]) - tonumber(ARGV[2])) * 2
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
return 'ok'
"""

# Notices recorded in MySQL are no longer owed (app/notifications/flows.py). KEYS[1] notices due.
# ARGV: user, admitted_until, user, admitted_until, ...: each field is deleted only if it is still
# that admission's (a later admission of the same user owes a notice of its own).
FORGET_NOTICES = """
local n = 0
for i = 1, #ARGV, 2 do
  local owed = redis.call('HGET', KEYS[1], ARGV[i])
  if owed and string.match(owed, '^([^|]+)') == ARGV[i + 1] then n = n + redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return n
"""

# A one-time code's check (app/verification.py). KEYS[1] code hash, KEYS[2] attempts.
# ARGV: hash of the code given, max attempts
CHECK_CODE = """
local expected = redis.call('GET', KEYS[1])
if not expected then return 'expired' end
local tries = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], redis.call('TTL', KEYS[1]))
if tries > tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 'too_many'
end
if expected == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 'ok'
end
return 'wrong'
"""

# Refresh-token rotation (app/auth/sessions.py). KEYS[1] session.
# ARGV: presented refresh jti, next refresh jti, ttl seconds
ROTATE_SESSION = """
local current = redis.call('HGET', KEYS[1], 'refresh')
if not current then return 'revoked' end
if current ~= ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 'reused'
end
redis.call('HSET', KEYS[1], 'refresh', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 'ok'
"""

_registered: dict[tuple[int, str], Any] = {}


def script(name: str) -> Any:
    """The named script, registered once per Redis client (EVALSHA; reloaded after a flush)."""
    client = redis_store.client
    key = (id(client), name)
    if key not in _registered:
        _registered[key] = client.register_script(globals()[name])
    return _registered[key]
