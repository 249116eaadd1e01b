-- Drop a value and fence the computation in flight for it (its lease goes too), waking waiters.
-- KEYS: value, lease; ARGV: wake-up channel. Reply: 1 if a value was there.
local removed = redis.call('DEL', KEYS[1])
if redis.call('DEL', KEYS[2]) == 1 then
  redis.call('PUBLISH', ARGV[1], KEYS[2])
end
return removed
