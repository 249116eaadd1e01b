-- Publish a record written beforehand under a staging key (a large value: passing it through
-- the script would cost the server several times a plain SET). The same checks as write.lua;
-- the staged record is moved into place and its soft expiry written over its first field.
-- KEYS: value, lease, epoch, staged record, tag versions...
-- ARGV: lease token ('' = plain set), epoch at the read, tag versions at the read (the staged
--       record carries them), ttl ms (-1 = none), stale ms, wake-up channel
-- Reply: 1 published, 0 refused (lease lost, or an invalidation since the read), -1 (plain set
--        only) the tags' versions moved since the caller read them: read them and stage again.
local token = ARGV[1]
if token ~= '' then
  local held = redis.call('GET', KEYS[2])
  if not held or string.sub(held, 1, #token + 1) ~= token .. '\n' then
    redis.call('DEL', KEYS[4])
    return 0
  end
end

local ttl = tonumber(ARGV[4])
local life = -1
if ttl >= 0 then life = ttl + tonumber(ARGV[5]) end

-- As in write.lua: the tags outlive the record that carries their versions.
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i = 5, #KEYS do
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
if #KEYS > 4 then
  local v = {}
  for i = 5, #KEYS do v[#v + 1] = redis.call('GET', KEYS[i]) or '0' end
  versions = table.concat(v, ',')
end

if token ~= '' and ((redis.call('GET', KEYS[3]) or '0') ~= ARGV[2] or versions ~= ARGV[3]) then
  redis.call('DEL', KEYS[4])
  redis.call('DEL', KEYS[2])
  redis.call('PUBLISH', ARGV[6], KEYS[2])
  return 0
end
if token == '' and versions ~= ARGV[3] then
  redis.call('DEL', KEYS[4])
  return -1
end
if redis.call('EXISTS', KEYS[4]) == 0 then  -- the staged record expired: refused
  if token ~= '' then
    redis.call('DEL', KEYS[2])
    redis.call('PUBLISH', ARGV[6], KEYS[2])
  end
  return 0
end

local soft = 0
if ttl >= 0 then soft = math.floor(now_us / 1000) + ttl end
redis.call('RENAME', KEYS[4], KEYS[1])
redis.call('SETRANGE', KEYS[1], 0, string.format('%015.0f', soft))
if life >= 0 then
  redis.call('PEXPIRE', KEYS[1], life)
else
  redis.call('PERSIST', KEYS[1])
end
if token ~= '' then
  redis.call('DEL', KEYS[2])
  redis.call('PUBLISH', ARGV[6], KEYS[2])  -- waiters of this lease may stop waiting
end
return 1
