-- The accept path of a reserve that claims a waitlist offer: RESERVE's checks, but the units come
-- from the offer (not the gate) and no admission is needed; what the fan leaves of the offer passes on.
-- KEYS: 1 OFFERS  2 idempotency  3 user units  4 OFFEREXP  5 USEROFFER  6 reserve stream  7 pending
--       8 revocation key  9 OFFERED  10 gate  11 WL  12 POOL  13 STATS  14 FRESH
--       15 pending ids per user  16 pending units per section
-- ARGV: 1 user  2 offer id  3 now  4 idempotency field  5 request hash  6 reservation id
--       7 quantity  8 max per user  9 request record (JSON)  10 section
--! include put_back
--! include intake
local early = refused_before()
if early then return early end
local value = redis.call('HGET', KEYS[1], ARGV[2])
if not value then return {'offer_gone'} end
local user, offered, expires = string.match(value, '^(%d+):(%d+):(.+)$')
if user ~= ARGV[1] then return {'offer_gone'} end
if tonumber(expires) <= tonumber(ARGV[3]) then return {'offer_gone'} end
local qty = tonumber(ARGV[7])
offered = tonumber(offered)
if qty > offered then return {'more_than_offered', tostring(offered)} end
local limited = over_limit()
if limited then return limited end
redis.call('HDEL', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[2])
redis.call('HDEL', KEYS[5], ARGV[1])
redis.call('SREM', KEYS[14], ARGV[2])
redis.call('DECRBY', KEYS[9], offered)
if offered > qty then put_back(KEYS[10], KEYS[11], KEYS[12], KEYS[13], offered - qty) end
return accept(KEYS[15], KEYS[16])
