-- Look at a record again on the server's clock and, for a caller that may compute, take the lease.
-- KEYS: value, lease, epoch, tag versions...
-- ARGV: lease token ('' = only look), '1' = ignore the stored value, codec id, lease ms,
--       early refresh draw ('' = off; XFetch: due when now + creator ms * draw reaches expiry),
--       '1' = make the tags last the lease's time even without a token (a staged set is about
--       to publish under them)
-- Reply: a fresh, current record as stored (it starts with a digit), else
--   "<state><won>\n<epoch>\n<tag versions>\n<record or nothing>": state m (miss), s (stale: past
--   its soft expiry), e (due for an early refresh); won is 1 when this call holds the lease.
local token, codec, lease_ms, draw = ARGV[1], ARGV[3], tonumber(ARGV[4]), ARGV[5]

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- A computation carries its tags' versions, so they must outlive its lease: a tag key that
-- expired would read as '0' again.
if token ~= '' or ARGV[6] == '1' then
  for i = 4, #KEYS do
    local left = redis.call('PTTL', KEYS[i])
    if left == -2 then
      redis.call('SET', KEYS[i], string.format('%.0f', now_us()), 'PX', lease_ms)
    elseif left >= 0 and left < lease_ms then
      redis.call('PEXPIRE', KEYS[i], lease_ms)
    end
  end
end

local versions = ''
if #KEYS > 3 then
  local v = {}
  for i = 4, #KEYS do v[#v + 1] = redis.call('GET', KEYS[i]) or '0' end
  versions = table.concat(v, ',')
end

local function number(text)
  -- Strict: 1 to 15 ASCII digits, nothing else (no sign, space or exponent).
  if #text >= 1 and #text <= 15 and string.find(text, '^[0-9]+$') then return tonumber(text) end
  return nil
end

local raw = ARGV[2] ~= '1' and redis.call('GET', KEYS[1])
local state = 'm'
if raw then
  local a = string.find(raw, '\n', 1, true)
  local b = a and string.find(raw, '\n', a + 1, true)
  local c = b and string.find(raw, '\n', b + 1, true)
  local d = c and string.find(raw, '\n', c + 1, true)
  local soft = d and number(string.sub(raw, 1, a - 1))
  local took = d and number(string.sub(raw, a + 1, b - 1))
  if soft and took and string.sub(raw, b + 1, c - 1) == codec
      and string.sub(raw, c + 1, d - 1) == versions then
    if soft == 0 then return raw end
    local now = math.floor(now_us() / 1000)
    if soft > now then
      if draw == '' or now + took * tonumber(draw) < soft then return raw end
      state = 'e'
    else
      state = 's'
    end
  else
    raw = false
  end
end

local epoch = redis.call('GET', KEYS[3]) or '0'
local won = '0'
if token ~= '' then
  local lease = token .. '\n' .. epoch .. '\n' .. versions
  if redis.call('SET', KEYS[2], lease, 'NX', 'PX', lease_ms) then
    won = '1'
  else
    -- A lease taken before an invalidation (another epoch or other tag versions) computes a
    -- value that will be refused: take it over instead of waiting for it.
    local held = redis.call('GET', KEYS[2])
    local cut = held and string.find(held, '\n', 1, true)
    if cut and string.sub(held, cut + 1) ~= epoch .. '\n' .. versions then
      redis.call('SET', KEYS[2], lease, 'PX', lease_ms)
      won = '1'
    end
  end
end
return state .. won .. '\n' .. epoch .. '\n' .. versions .. '\n' .. (raw or '')
