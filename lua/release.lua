-- release.lua: the compensating restock. Gives back exactly what the order's
-- holds recorded, once. Quantities come from the holds, never the caller.
--
-- KEYS, five per SKU, the same layout as reserve.lua:
--   +1 -> sg:{SKU}:avail, +2 -> sg:{SKU}:held, +3 -> sg:{SKU}:sold (unused),
--   +4 -> sg:{SKU}:hold:ORDER, +5 -> sg:{SKU}:deadlines
-- ARGV:
--   [1] -> order id
-- Returns {units, lines}: units given back and holds released. A hold that is
-- missing (already released) or committed is left alone and counts zero;
-- {-2, 0} means bad arguments and nothing changed. Bad arguments include
-- keys that are not one SKU's five keys with this order's hold key, one SKU
-- twice (it would be given back twice), and a counter or hold that is not an
-- integer (a hand edit, logged).

local order = ARGV[1]
local n = #KEYS / 5
if order == nil or order == "" or #ARGV ~= 1 or n < 1 or #KEYS % 5 ~= 0 then
  return {-2, 0}
end

-- A counter as INCRBY and DECRBY read it; a missing key counts as zero.
local function is_counter(s)
  return not s or (string.match(s, "^%-?%d+$") ~= nil and #s <= 16)
end

-- Every read and check happens before the first write: Redis has no rollback.
local qty = {}
local seen = {}
for i = 1, n do
  local base = 5 * (i - 1)
  local p = string.match(KEYS[base + 1], "^(.+):avail$")
  if not p or seen[p] or KEYS[base + 2] ~= p .. ":held" or KEYS[base + 3] ~= p .. ":sold"
    or KEYS[base + 4] ~= p .. ":hold:" .. order or KEYS[base + 5] ~= p .. ":deadlines" then
    return {-2, 0}
  end
  seen[p] = true

  local hold_key = KEYS[base + 4]
  local hold = redis.call("HMGET", hold_key, "qty", "state")
  if hold[1] and hold[2] == "held" then
    if not string.match(hold[1], "^%d+$") or #hold[1] > 15 or tonumber(hold[1]) < 1 then
      redis.log(redis.LOG_WARNING, "stockgate release: corrupt hold " .. hold_key)
    elseif not is_counter(redis.call("GET", KEYS[base + 1])) or not is_counter(redis.call("GET", KEYS[base + 2])) then
      redis.log(redis.LOG_WARNING, "stockgate release: non-integer counter for " .. hold_key)
      return {-2, 0}
    else
      -- Raises now, before any write, if the deadlines key is not a sorted set.
      redis.call("ZSCORE", KEYS[base + 5], order)
      qty[i] = tonumber(hold[1])
    end
  elseif not hold[1] then
    redis.log(redis.LOG_NOTICE, "stockgate release: no hold at " .. hold_key)
  end
end

local units, lines = 0, 0
for i = 1, n do
  if qty[i] then
    local base = 5 * (i - 1)
    redis.call("INCRBY", KEYS[base + 1], qty[i])
    redis.call("DECRBY", KEYS[base + 2], qty[i])
    redis.call("DEL", KEYS[base + 4])
    redis.call("ZREM", KEYS[base + 5], order)
    units = units + qty[i]
    lines = lines + 1
  end
end
return {units, lines}
