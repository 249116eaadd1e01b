-- Store a record; with a lease token, only while that lease is held and nothing was invalidated
-- since the read that took it.
-- A large value comes staged: its whole record was written beforehand with a plain SET under
-- KEYS[4] (passing it through the script would cost the server several times that SET), its soft
-- expiry left as zeros. It is moved into place and its expiry written over the zeros.
-- KEYS: value, lease, epoch, staged record ('' = the payload is ARGV[5]), tag versions...
-- ARGV: lease token ('' = plain set), epoch at the read, tag versions at the read (a staged
--       record carries them), codec id, payload ('' when staged), ttl ms (-1 = none), stale ms,
--       creator ms, wake-up channel
-- Reply: 1 written, 0 refused, -1 (a staged plain set only) the tags' versions moved since the
--        caller read them: read them and stage again.
local token = ARGV[1]
local staged = KEYS[4] ~= ''

local function drop_staged()
  if staged then redis.call('DEL', KEYS[4]) end
end

local function release()
  redis.call('DEL', KEYS[2])
  redis.call('PUBLISH', ARGV[9], KEYS[2])  -- waiters of this lease may stop waiting
end

if token ~= '' then
  local held = redis.call('GET', KEYS[2])
  if not held or string.sub(held, 1, #token + 1) ~= token .. '\n' then
    drop_staged()
    return 0
  end
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
  drop_staged()
  release()
  return 0
end
if staged and token == '' and versions ~= ARGV[3] then
  drop_staged()
  return -1
end

local soft = 0
if ttl >= 0 then soft = math.floor(now_us / 1000) + ttl end
if staged then
  if redis.call('EXISTS', KEYS[4]) == 0 then  -- the staged record expired: refused
    if token ~= '' then release() end
    return 0
  end
  redis.call('RENAME', KEYS[4], KEYS[1])
  redis.call('SETRANGE', KEYS[1], 0, string.format('%015.0f', soft))
  if life >= 0 then
    redis.call('PEXPIRE', KEYS[1], life)
  else
    redis.call('PERSIST', KEYS[1])
  end
else
  local raw = string.format('%.0f', soft) .. '\n' .. ARGV[8] .. '\n' .. ARGV[4] .. '\n'
    .. versions .. '\n' .. ARGV[5]
  if ttl >= 0 then
    redis.call('SET', KEYS[1], raw, 'PX', life)
  else
    redis.call('SET', KEYS[1], raw)
  end
end
if token ~= '' then release() end
return 1
