-- absorb.lua: after a failover, sell once the units of confirmed orders
-- whose holds the promoted replica never had (an asynchronous replica lost
-- the reserve the row relied on), on a fenced SKU. Each such order gets the
-- committed tombstone its commit would have left, so that running this
-- again, a late commit or a retried reserve of the order changes nothing.
-- An order whose hold is there (held or committed) is left alone: its own
-- commit or the sweeper settles it.
--
-- KEYS:
--   [1] -> sg:{SKU}:avail (must be missing: the SKU is fenced)
--   [2] -> sg:{SKU}:held
--   [3] -> sg:{SKU}:sold
--   then one per order: sg:{SKU}:hold:ORDER
-- ARGV:
--   [1] -> tombstone retention, milliseconds (>= 1)
--   then three per order, in the order of its hold key: order id, the
--   confirmed row's quantity of this SKU (>= 1), the row's hold token
-- Returns {units, orders} sold now; {-1, 0} when the available counter
-- exists (not fenced: rebuild would not see these units, so nothing
-- changed); {-2, 0} for bad arguments (keys not of one SKU or of another
-- order, a quantity that is not a decimal integer >= 1, a sold counter that
-- is not an integer), nothing changed.

local retention = uint(ARGV[1])
local p = sku_of(0)
local n = #KEYS - 3
if not retention or retention < 1 or not p or #ARGV ~= 1 + 3 * n then
  return {-2, 0}
end
if redis.call("EXISTS", KEYS[1]) == 1 then
  return {-1, 0}
end
if not counter(redis.call("GET", KEYS[3])) then
  return {-2, 0}
end

-- Every read and check happens before the first write: Redis has no rollback.
local lost = {}
for i = 1, n do
  local order, q = ARGV[2 + 3 * (i - 1)], uint(ARGV[3 + 3 * (i - 1)])
  if KEYS[3 + i] ~= p .. ":hold:" .. order or not q or q < 1 then
    return {-2, 0}
  end
  if redis.call("EXISTS", KEYS[3 + i]) == 0 then
    lost[#lost + 1] = i
  end
end

local units = 0
for _, i in ipairs(lost) do
  local q = ARGV[3 + 3 * (i - 1)]
  redis.call("HSET", KEYS[3 + i], "qty", q, "deadline", 0, "state", "committed", "tok", ARGV[4 + 3 * (i - 1)])
  redis.call("PEXPIRE", KEYS[3 + i], retention)
  redis.call("INCRBY", KEYS[3], q)
  units = units + tonumber(q)
end
return {units, #lost}
