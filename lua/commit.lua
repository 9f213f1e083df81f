-- commit.lua: held becomes sold, once. The hold stays behind as a tombstone
-- for the retention window so that a retried reserve of the same order finds
-- it and does not decrement again.
--
-- KEYS, five per SKU, the same layout as reserve.lua:
--   +1 -> sg:{SKU}:avail (unused), +2 -> sg:{SKU}:held, +3 -> sg:{SKU}:sold,
--   +4 -> sg:{SKU}:hold:ORDER, +5 -> sg:{SKU}:deadlines
-- ARGV:
--   [1] -> order id
--   [2] -> tombstone retention, milliseconds (>= 1)
-- Returns {units, lines, missing}: units moved to sold, holds committed now,
-- and holds that were not there at all (released, or never taken). Holds
-- committed earlier count in none. {-2, 0, 0} means bad arguments and nothing
-- changed. Bad arguments include keys that are not one SKU's five keys with
-- this order's hold key, one SKU twice (it would be sold twice), and a
-- counter that is not an integer (a hand edit, logged).

local order = ARGV[1]
local retention = ARGV[2]
local n = #KEYS / 5
if order == nil or order == "" or #ARGV ~= 2 or n < 1 or #KEYS % 5 ~= 0
  or type(retention) ~= "string" or not string.match(retention, "^%d+$")
  or #retention > 15 or tonumber(retention) < 1 then
  return {-2, 0, 0}
end

-- A counter as INCRBY and DECRBY read it; a missing key counts as zero.
local function is_counter(s)
  return not s or (string.match(s, "^%-?%d+$") ~= nil and #s <= 16)
end

-- Every read and check happens before the first write: Redis has no rollback.
local qty = {}
local seen = {}
local missing = 0
for i = 1, n do
  local base = 5 * (i - 1)
  local p = string.match(KEYS[base + 1], "^(.+):avail$")
  if not p or seen[p] or KEYS[base + 2] ~= p .. ":held" or KEYS[base + 3] ~= p .. ":sold"
    or KEYS[base + 4] ~= p .. ":hold:" .. order or KEYS[base + 5] ~= p .. ":deadlines" then
    return {-2, 0, 0}
  end
  seen[p] = true

  local hold_key = KEYS[base + 4]
  local hold = redis.call("HMGET", hold_key, "qty", "state")
  if not hold[1] then
    missing = missing + 1
    redis.log(redis.LOG_WARNING, "stockgate commit: no hold at " .. hold_key)
  elseif hold[2] == "held" then
    if not string.match(hold[1], "^%d+$") or #hold[1] > 15 or tonumber(hold[1]) < 1 then
      redis.log(redis.LOG_WARNING, "stockgate commit: corrupt hold " .. hold_key)
    elseif not is_counter(redis.call("GET", KEYS[base + 2])) or not is_counter(redis.call("GET", KEYS[base + 3])) then
      redis.log(redis.LOG_WARNING, "stockgate commit: non-integer counter for " .. hold_key)
      return {-2, 0, 0}
    else
      -- Raises now, before any write, if the deadlines key is not a sorted set.
      redis.call("ZSCORE", KEYS[base + 5], order)
      qty[i] = tonumber(hold[1])
    end
  end
end

local units, lines = 0, 0
for i = 1, n do
  if qty[i] then
    local base = 5 * (i - 1)
    redis.call("DECRBY", KEYS[base + 2], qty[i])
    redis.call("INCRBY", KEYS[base + 3], qty[i])
    redis.call("HSET", KEYS[base + 4], "state", "committed")
    redis.call("PEXPIRE", KEYS[base + 4], retention)
    redis.call("ZREM", KEYS[base + 5], order)
    units = units + qty[i]
    lines = lines + 1
  end
end
return {units, lines, missing}
