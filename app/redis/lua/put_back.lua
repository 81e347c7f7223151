-- Shared: units coming back to sale (KEYS: gate, waitlist, waitlist pool, waitlist stats). While
-- fans wait on the section's waitlist, the units go to its pool, from which only offers are made
-- (app/booking/waitlist.py); otherwise to the gate. Returns the gate's new value, -3 (to the
-- waitlist) or -2 (no gate: the reconciler derives it).
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
