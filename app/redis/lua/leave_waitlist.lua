-- KEYS: WL, WLQ. ARGV: user. 1 when the fan was waiting.
redis.call('HDEL', KEYS[2], ARGV[1])
return redis.call('ZREM', KEYS[1], ARGV[1])
