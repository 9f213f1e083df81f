-- reserve.lua: take one order's hold on every line, all or nothing.
--
-- KEYS, five per line; line i (1-based) uses KEYS[5*(i-1)+1 .. 5*i]:
--   +1 -> sg:{SKU}:avail       available units; a missing key means "not stocked"
--   +2 -> sg:{SKU}:held        units held by undecided orders
--   +3 -> sg:{SKU}:sold        units sold (unused here; kept so every script shares one layout)
--   +4 -> sg:{SKU}:hold:ORDER  this order's hold on SKU: hash {qty, deadline, state}
--   +5 -> sg:{SKU}:deadlines   zset ORDER -> hold deadline, read by the sweeper
-- ARGV:
--   [1]   -> order id, 1-64 bytes
--   [2]   -> hold deadline, unix milliseconds (time comes from the caller)
--   [2+i] -> quantity of line i, a decimal integer >= 1
-- Returns {code, line, n}:
--   { 1, 0, 0} reserved now
--   { 2, 0, 0} this order already holds every line (a repeat: nothing changed)
--   { 3, 0, 0} this order already committed (a tombstone: nothing changed)
--   { 0, i, a} line i is short: only a units are available; nothing changed
--   {-1, i, 0} line i's SKU was never stocked; nothing changed
--   {-2, i, 0} bad arguments at line i (0: the order id); nothing changed
--   {-3, i, 0} conflict: this order holds line i with another quantity, or
--              holds some lines and not others; nothing changed
-- Bad arguments are keys that are not one SKU's five keys in the order above
-- (with this order's hold key), one SKU on two lines, a quantity that is not
-- a decimal integer >= 1, and a counter that is not an integer (a hand edit,
-- logged). A deadline that is not a number makes the first write, ZADD,
-- raise with nothing written. Limits that protect no counter (MaxQty, a
-- deadline in the future) are internal/stock's to check.

local order, deadline = ARGV[1], ARGV[2]
-- A hold under an order id the Gate refuses could never be released or
-- committed through it: its units would stay held.
if not order or order == "" or #order > 64 then
  return {-2, 0, 0}
end
local n, bad = sku_groups(order)
if not n then
  return {-2, bad, 0}
end

-- Every read and check happens before the first write: Redis has no rollback.
local qty = {}
local found, committed, unheld = 0, 0, nil
for i = 1, n do
  local q = uint(ARGV[2 + i])
  -- A negative qty would add stock; a fraction would make DECRBY raise.
  if not q or q < 1 then
    return {-2, i, 0}
  end
  qty[i] = q
  local hold = redis.call("HMGET", KEYS[5 * i - 1], "qty", "state")
  if not hold[1] then
    unheld = unheld or i
  elseif tonumber(hold[1]) ~= q then
    return {-3, i, 0}
  else
    found = found + 1
    if hold[2] == "committed" then
      committed = committed + 1
    end
  end
end
if found > 0 then
  if unheld then
    return {-3, unheld, 0}
  end
  return {committed > 0 and 3 or 2, 0, 0}
end

-- This loop is the hot path of a flash sale, so it makes as few calls as it
-- safely can: every redis.call costs about as much as a small EVALSHA.
for i = 1, n do
  local base = 5 * (i - 1)
  local raw_avail, raw_held = mget(KEYS[base + 1], KEYS[base + 2])
  if not raw_avail then
    return {-1, i, 0}
  end
  local avail, held = counter(raw_avail), counter(raw_held)
  if not avail or not held then
    redis.log(redis.LOG_WARNING, "stockgate reserve: non-integer counter at " .. KEYS[base + 1]
      .. " or " .. KEYS[base + 2])
    return {-2, i, 0}
  end
  if avail < qty[i] then
    return {0, i, math.max(avail, 0)}
  end
  check_deadlines(n, KEYS[base + 5], order)
end

-- Every key's type and every counter was checked above, so after the first
-- ZADD (which checks the deadline, and for one line the deadlines key) no
-- call can raise.
for i = 1, n do
  local base = 5 * (i - 1)
  redis.call("ZADD", KEYS[base + 5], deadline, order)
  redis.call("DECRBY", KEYS[base + 1], qty[i])
  redis.call("INCRBY", KEYS[base + 2], qty[i])
  redis.call("HSET", KEYS[base + 4], "qty", qty[i], "deadline", deadline, "state", "held")
end
return {1, 0, 0}
