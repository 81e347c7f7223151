-- Refresh-token rotation (app/auth/sessions.py). KEYS[1] session.
-- ARGV: presented refresh jti, next refresh jti, ttl seconds
local current = redis.call('HGET', KEYS[1], 'refresh')
if not current then return 'revoked' end
if current ~= ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 'reused'
end
redis.call('HSET', KEYS[1], 'refresh', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 'ok'
