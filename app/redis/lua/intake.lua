-- Shared by RESERVE and CLAIM_OFFER, which keep these positions: KEYS 2 idempotency, 3 user
-- units, 6 reserve stream, 7 pending records, 8 the access token's revocation key; ARGV 1 user,
-- 4 idempotency field, 5 request hash, 6 reservation id, 7 quantity, 8 max per user, 9 record,
-- 10 section. accept() also gets the keys of the user's pending ids and the per-section pending units.
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
