-- KEYS: gate, holds, pending records, writes counter. ARGV: expected units, now, writes counter as
-- read before MySQL was. Resets only when no request is between the API and MySQL and no hold
-- writer committed meanwhile: otherwise MySQL's count and Redis's could describe different moments.
-- KEYS 5-6: the waitlist's pool and the units in open offers: MySQL counts them free, but they are
-- kept for waiting fans, so the gate gets the rest.
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
