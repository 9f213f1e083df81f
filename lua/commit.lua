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
-- changed. Bad arguments are a retention that is not a decimal integer >= 1
-- (PEXPIRE would raise after the first write, or delete the tombstone), keys
-- that are not one SKU's five keys with this order's hold key, one SKU twice
-- (it would be sold twice), and a counter that is not an integer (a hand
-- edit, logged). A hold whose qty is not a whole number is logged and left
-- alone.

local order = ARGV[1]
local retention = uint(ARGV[2])
if not retention or retention < 1 then
  return {-2, 0, 0}
end
local n = sku_groups(order)
if not n then
  return {-2, 0, 0}
end

-- Every read and check happens before the first write: Redis has no rollback.
local qty = {}
local missing = 0
for i = 1, n do
  local q, found = hold_units(i, n, order, 3) -- on to sold, KEYS[base + 3]
  if not q then
    return {-2, 0, 0}
  end
  if not found then
    missing = missing + 1
    redis.log(redis.LOG_WARNING, "stockgate commit: no hold at " .. KEYS[5 * i - 1])
  end
  qty[i] = q
end

local units, lines = settle(qty, 3, order, function(hold)
  redis.call("HSET", hold, "state", "committed")
  redis.call("PEXPIRE", hold, retention)
end)
return {units, lines, missing}
