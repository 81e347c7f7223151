-- Notices recorded in MySQL are no longer owed (app/notifications/flows.py). KEYS[1] notices due.
-- ARGV: user, admitted_until, user, admitted_until, ...: each field is deleted only if it is still
-- that admission's (a later admission of the same user owes a notice of its own).
local n = 0
for i = 1, #ARGV, 2 do
  local owed = redis.call('HGET', KEYS[1], ARGV[i])
  if owed and string.match(owed, '^([^|]+)') == ARGV[i + 1] then n = n + redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return n
