"""Lua scripts of the booking intake and the sold-out gate. Every key shares the sale's hash tag
(``q:{event}:``), except the caller's token-revocation key read by RESERVE."""

from __future__ import annotations

# Shared: units coming back to sale (KEYS: gate, waitlist, waitlist pool, waitlist stats). While
# fans wait on the section's waitlist, the units go to its pool, from which only offers are made
# (app/booking/waitlist.py); otherwise to the gate. Returns the gate's new value, -3 (to the
# waitlist) or -2 (no gate: the reconciler derives it).
_PUT_BACK_FN = r"""
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
# 4 idempotency field, 5 request hash, 6 reservation id, 7 quantity, 8 max per user, 9 record.
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
local function accept()
  redis.call('HSET', KEYS[2], ARGV[4], ARGV[6] .. '|' .. ARGV[5])
  redis.call('HINCRBY', KEYS[3], ARGV[1], tonumber(ARGV[7]))
  redis.call('HSET', KEYS[7], ARGV[6], ARGV[9])
  redis.call('XADD', KEYS[6], '*', 'r', ARGV[9])
  return {'accepted', ARGV[6]}
end
"""

# The whole accept path of POST /api/tickets/reserve in one call.
# KEYS: 1 active (admissions)  2 idempotency  3 user units  4 gate  5 holds  6 reserve stream
#       7 pending records  8 the access token's revocation key  9 waitlist  10 waitlist pool
#       11 waitlist stats
# ARGV: 1 user  2 pass exp  3 now  4 idempotency field  5 request hash  6 reservation id
#       7 quantity  8 max per user  9 request record (JSON)
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
return accept()
"""

# KEYS: gate, user units. ARGV: quantity, user (or ''). Units back to the gate (if it exists) and
# off the user's live count.
# KEYS 3-5: the section's waitlist, pool and stats (units go to waiting fans first).
GIVE = _PUT_BACK_FN + r"""
if ARGV[2] ~= '' and redis.call('HINCRBY', KEYS[2], ARGV[2], -tonumber(ARGV[1])) < 0 then
  redis.call('HSET', KEYS[2], ARGV[2], 0)
end
return put_back(KEYS[1], KEYS[3], KEYS[4], KEYS[5], tonumber(ARGV[1]))
"""

# KEYS: gate, holds, user units. ARGV: member, give back (0|1), user. A hold's units return to the
# gate at most once: either here (expiry/cancel) or when TAKE reclaimed them after the deadline.
# The user's live count drops on every expiry/cancel (MySQL moves a hold out of `held` once).
# KEYS 4-6: the section's waitlist, pool and stats.
RELEASE_HOLD = _PUT_BACK_FN + r"""
local removed = redis.call('ZREM', KEYS[2], ARGV[1])
if ARGV[2] ~= '1' then return -1 end
local qty = tonumber(string.match(ARGV[1], ':(%d+)$'))
if ARGV[3] ~= '' and redis.call('HINCRBY', KEYS[3], ARGV[3], -qty) < 0 then redis.call('HSET', KEYS[3], ARGV[3], 0) end
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
redis.call('SET', KEYS[1], math.max(0, tonumber(ARGV[1]) - kept))
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
return {'reset', previous or false}
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
# ARGV: 1 user  2 offer id  3 now  4 idempotency field  5 request hash  6 reservation id
#       7 quantity  8 max per user  9 request record (JSON)
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
return accept()
"""
