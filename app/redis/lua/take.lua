-- Shared: take ``want`` units from the gate (KEYS: gate, holds, waitlist, pool, stats). When short,
-- holds whose deadline has passed are reclaimed first (their units are free in MySQL too:
-- availability never counts an expired hold, even before the sweeper runs); reclaimed units go to
-- the waitlist first, like any release. Returns -2 (no gate yet), -1 (short) or units left.
--! include put_back
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
