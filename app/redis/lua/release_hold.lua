-- KEYS: gate, holds, user units. ARGV: member, give back (0|1), user. A hold's units return to the
-- gate at most once: either here (expiry/cancel) or when TAKE reclaimed them after the deadline.
-- The user's live count drops on every expiry/cancel (MySQL moves a hold out of `held` once).
-- KEYS 4-6: the section's waitlist, pool and stats.
--! include put_back
local removed = redis.call('ZREM', KEYS[2], ARGV[1])
if ARGV[2] ~= '1' then return -1 end
local qty = tonumber(string.match(ARGV[1], ':(%d+)$'))
off_count(KEYS[3], ARGV[3], qty)
if removed == 1 then return put_back(KEYS[1], KEYS[4], KEYS[5], KEYS[6], qty) end
return -1
