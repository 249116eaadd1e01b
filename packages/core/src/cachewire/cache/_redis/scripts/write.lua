-- Store a record; with a lease token, only while that lease is held and nothing was invalidated
-- since the read that took it.
-- KEYS: value, lease, epoch, tag versions...
-- ARGV: lease token ('' = plain set), epoch at the read, tag versions at the read, codec id,
--       payload, ttl ms (-1 = none), stale ms, creator ms, wake-up channel
-- Reply: 1 written, 0 refused.
local token = ARGV[1]
if token ~= '' then
  local held = redis.call('GET', KEYS[2])
  if not held or string.sub(held, 1, #token + 1) ~= token .. '\n' then return 0 end
end

local ttl = tonumber(ARGV[6])
local life = -1
if ttl >= 0 then life = ttl + tonumber(ARGV[7]) end

-- The tags must outlive the record that carries their versions (a record without expiry keeps
-- them forever); an absent tag gets a version never used before. A tag is given twice the life
-- it needs when extended, so that writes under it rarely change it: Redis reports any change to
-- a tag key to the processes that keep its version locally, which then read it again.
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i = 4, #KEYS do
  local left = redis.call('PTTL', KEYS[i])
  if left == -2 then
    if life >= 0 then
      redis.call('SET', KEYS[i], string.format('%.0f', now_us), 'PX', life)
    else
      redis.call('SET', KEYS[i], string.format('%.0f', now_us))
    end
  elseif left >= 0 then
    if life < 0 then
      redis.call('PERSIST', KEYS[i])
    elseif left < life then
      redis.call('PEXPIRE', KEYS[i], life * 2)
    end
  end
end

local versions = ''
if #KEYS > 3 then
  local v = {}
  for i = 4, #KEYS do v[#v + 1] = redis.call('GET', KEYS[i]) or '0' end
  versions = table.concat(v, ',')
end

if token ~= '' and ((redis.call('GET', KEYS[3]) or '0') ~= ARGV[2] or versions ~= ARGV[3]) then
  redis.call('DEL', KEYS[2])
  redis.call('PUBLISH', ARGV[9], KEYS[2])
  return 0
end

local soft = 0
if ttl >= 0 then soft = math.floor(now_us / 1000) + ttl end
local head = string.format('%.0f', soft) .. '\n' .. ARGV[8] .. '\n' .. ARGV[4] .. '\n' .. versions
  .. '\n'
-- The payload is appended rather than joined to the head here: a joined copy of a large value
-- costs the server more than the append's.
if ttl >= 0 then
  redis.call('SET', KEYS[1], head, 'PX', life)
else
  redis.call('SET', KEYS[1], head)
end
redis.call('APPEND', KEYS[1], ARGV[5])
if token ~= '' then
  redis.call('DEL', KEYS[2])
  redis.call('PUBLISH', ARGV[9], KEYS[2])  -- waiters of this lease may stop waiting
end
return 1
