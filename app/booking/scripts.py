"""Lua scripts of the booking intake and the sold-out gate. Every key shares the sale's hash tag
(``q:{event}:``), except the caller's token-revocation key read by RESERVE."""

from __future__ import annotations

# Shared: take ``want`` units from the gate (KEYS: gate, holds). When short, holds whose deadline
# has passed are reclaimed first (their units are free in MySQL too: availability never counts an
# expired hold, even before the sweeper runs). Returns -2 (no gate yet), -1 (short) or units left.
_TAKE_FN = r"""
local function take(gate_key, holds_key, want, now)
  local v = redis.call('GET', gate_key)
  if not v then return -2 end
  if tonumber(v) < want then
    local back = 0
    for _, member in ipairs(redis.call('ZRANGEBYSCORE', holds_key, '-inf', now, 'LIMIT', 0, 200)) do
      back = back + tonumber(string.match(member, ':(%d+)$'))
      redis.call('ZREM', holds_key, member)
    end
    if back > 0 then v = redis.call('INCRBY', gate_key, back) end
    if tonumber(v) < want then return -1 end
  end
  return redis.call('DECRBY', gate_key, want)
end
"""

# The whole accept path of POST /api/tickets/reserve in one call.
# KEYS: 1 active (admissions)  2 idempotency  3 user units  4 gate  5 holds  6 reserve stream
#       7 pending records  8 the access token's revocation key
# ARGV: 1 user  2 pass exp  3 now  4 idempotency field  5 request hash  6 reservation id
#       7 quantity  8 max per user  9 request record (JSON)
# Reply: {outcome[, detail]}; 'accepted' means the request is on the stream (durable in Redis).
RESERVE = _TAKE_FN + r"""
if redis.call('EXISTS', KEYS[8]) == 1 then return {'token_revoked'} end
local seen = redis.call('HGET', KEYS[2], ARGV[4])
if seen then
  local rid, digest = string.match(seen, '^([^|]+)|(.+)$')
  if digest ~= ARGV[5] then return {'idempotency_key_reused'} end
  return {'replay', rid}
end
local until_ = redis.call('ZSCORE', KEYS[1], ARGV[1])
local now = tonumber(ARGV[3])
if not until_ or tonumber(until_) <= now or math.floor(tonumber(until_)) ~= tonumber(ARGV[2]) then
  return {'admission_inactive'}
end
local qty, most = tonumber(ARGV[7]), tonumber(ARGV[8])
local units = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
if units + qty > most then return {'limit_exceeded', tostring(units)} end
local left = take(KEYS[4], KEYS[5], qty, ARGV[3])
if left == -2 then return {'no_gate'} end
if left == -1 then return {'sold_out'} end
redis.call('HSET', KEYS[2], ARGV[4], ARGV[6] .. '|' .. ARGV[5])
redis.call('HINCRBY', KEYS[3], ARGV[1], qty)
redis.call('HSET', KEYS[7], ARGV[6], ARGV[9])
redis.call('XADD', KEYS[6], '*', 'r', ARGV[9])
return {'accepted', ARGV[6]}
"""

# KEYS: gate, user units. ARGV: quantity, user (or ''). Units back to the gate (if it exists) and
# off the user's live count.
GIVE = r"""
if ARGV[2] ~= '' and redis.call('HINCRBY', KEYS[2], ARGV[2], -tonumber(ARGV[1])) < 0 then
  redis.call('HSET', KEYS[2], ARGV[2], 0)
end
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCRBY', KEYS[1], ARGV[1]) end
return -2
"""

# KEYS: gate, holds, user units. ARGV: member, give back (0|1), user. A hold's units return to the
# gate at most once: either here (expiry/cancel) or when TAKE reclaimed them after the deadline.
# The user's live count drops on every expiry/cancel (MySQL moves a hold out of `held` once).
RELEASE_HOLD = r"""
local removed = redis.call('ZREM', KEYS[2], ARGV[1])
if ARGV[2] ~= '1' then return -1 end
local qty = tonumber(string.match(ARGV[1], ':(%d+)$'))
if ARGV[3] ~= '' and redis.call('HINCRBY', KEYS[3], ARGV[3], -qty) < 0 then redis.call('HSET', KEYS[3], ARGV[3], 0) end
if removed == 1 and redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCRBY', KEYS[1], qty) end
return -1
"""

# KEYS: gate, holds, pending records, writes counter. ARGV: expected units, now, writes counter as
# read before MySQL was. Resets only when no request is between the API and MySQL and no hold
# writer committed meanwhile: otherwise MySQL's count and Redis's could describe different moments.
RESET = r"""
if redis.call('HLEN', KEYS[3]) > 0 or (redis.call('GET', KEYS[4]) or '0') ~= ARGV[3] then
  return {'busy'}
end
local previous = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
return {'reset', previous or false}
"""
