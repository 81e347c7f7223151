-- A one-time code's check (app/verification.py). KEYS[1] code hash, KEYS[2] attempts.
-- ARGV: hash of the code given, max attempts
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
