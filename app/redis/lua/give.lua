-- KEYS: gate, user units. ARGV: quantity, user (or ''). Units back to the gate (if it exists) and
-- off the user's live count.
-- KEYS 3-5: the section's waitlist, pool and stats (units go to waiting fans first).
--! include put_back
off_count(KEYS[2], ARGV[2], tonumber(ARGV[1]))
return put_back(KEYS[1], KEYS[3], KEYS[4], KEYS[5], tonumber(ARGV[1]))
