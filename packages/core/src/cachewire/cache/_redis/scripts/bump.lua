-- Make every record carrying these tags stale: each tag that exists gets a version above any it
-- had (an absent tag is carried by nothing, so it stays absent). Leases taken under the old
-- versions may then be taken over: wake their waiters.
-- KEYS: tag versions...; ARGV: wake-up channel. Reply: how many tags were bumped.
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local bumped = 0
for i = 1, #KEYS do
  local current = redis.call('GET', KEYS[i])
  if current then
    local next_version = math.max((tonumber(current) or 0) + 1, now_us)
    redis.call('SET', KEYS[i], string.format('%.0f', next_version), 'KEEPTTL')
    bumped = bumped + 1
  end
end
if bumped > 0 then redis.call('PUBLISH', ARGV[1], '*') end
return bumped
