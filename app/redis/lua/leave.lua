-- ARGV: user, now, event type (QueueLeft | AdmissionReleased). Frees a place or an active slot.
--! include prelude
local user, now, kind = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local removed = redis.call('ZREM', K_LINE, user) + redis.call('ZREM', K_LANES, user) + redis.call('SREM', K_PRE, user)
  + redis.call('ZREM', K_ACTIVE, user)
redis.call('HDEL', K_JOINED, user)
redis.call('HDEL', K_HB, user)
if removed > 0 then emit(kind, user, nil, nil, now) end
return removed
