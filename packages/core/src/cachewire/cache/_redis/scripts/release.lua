-- Give a lease up (its holder failed or stores nothing) and wake whoever waits for it.
-- KEYS: lease; ARGV: lease token, wake-up channel. Reply: 1 released, 0 not held.
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, 1, #ARGV[1] + 1) == ARGV[1] .. '\n' then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], KEYS[1])
  return 1
end
return 0
