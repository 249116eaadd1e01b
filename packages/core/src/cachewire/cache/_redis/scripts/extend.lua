-- Keep a lease (and the tags its computation carries) alive while its holder computes.
-- KEYS: lease, tag versions...; ARGV: lease token, lease ms. Reply: 1 kept, 0 lost.
local held = redis.call('GET', KEYS[1])
if not held or string.sub(held, 1, #ARGV[1] + 1) ~= ARGV[1] .. '\n' then return 0 end
local ms = tonumber(ARGV[2])
redis.call('PEXPIRE', KEYS[1], ms)
for i = 2, #KEYS do
  local left = redis.call('PTTL', KEYS[i])
  if left >= 0 and left < ms then redis.call('PEXPIRE', KEYS[i], ms) end
end
return 1
