-- reserve.lua: take one order's hold on every line, all or nothing.
--
-- KEYS, five per line; line i (1-based) uses KEYS[5*(i-1)+1 .. 5*i]:
--   +1 -> sg:{SKU}:avail       available units; a missing key means "not stocked"
--   +2 -> sg:{SKU}:held        units held by undecided orders
--   +3 -> sg:{SKU}:sold        units sold (unused here; kept so every script shares one layout)
--   +4 -> sg:{SKU}:hold:ORDER  this order's hold on SKU: hash {qty, deadline, state}
--   +5 -> sg:{SKU}:deadlines   zset ORDER -> hold deadline, read by the sweeper
-- ARGV:
--   [1]   -> order id
--   [2]   -> hold deadline, unix milliseconds (time comes from the caller)
--   [2+i] -> quantity of line i, a decimal integer in 1..10000
-- Returns {code, line, n}:
--   { 1, 0, 0} reserved now
--   { 2, 0, 0} this order already holds every line (a repeat: nothing changed)
--   { 3, 0, 0} this order already committed (a tombstone: nothing changed)
--   { 0, i, a} line i is short: only a units are available; nothing changed
--   {-1, i, 0} line i's SKU was never stocked; nothing changed
--   {-2, i, 0} bad arguments at line i (0: the header); nothing changed
--   {-3, i, 0} conflict: this order holds line i with another quantity, or
--              holds some lines and not others; nothing changed

local MAX_QTY = 10000

local function parse_int(s)
  if type(s) ~= "string" or not string.match(s, "^%d+$") or #s > 15 then
    return nil
  end
  return tonumber(s)
end

local order = ARGV[1]
local deadline = parse_int(ARGV[2])
local n = #ARGV - 2
if order == nil or order == "" or deadline == nil or n < 1 or #KEYS ~= 5 * n then
  return {-2, 0, 0}
end

-- Every read and check happens before the first write: Redis has no rollback.
local qty = {}
local seen = {}
local held_count, committed_count = 0, 0
for i = 1, n do
  local q = parse_int(ARGV[2 + i])
  if q == nil or q < 1 or q > MAX_QTY then
    return {-2, i, 0}
  end
  local base = 5 * (i - 1)
  local avail_key = KEYS[base + 1]
  -- The same SKU twice would pass two separate checks against one counter.
  if seen[avail_key] then
    return {-2, i, 0}
  end
  seen[avail_key] = true
  qty[i] = q

  local hold = redis.call("HMGET", KEYS[base + 4], "qty", "state")
  if hold[1] then
    if tonumber(hold[1]) ~= q then
      return {-3, i, 0}
    end
    if hold[2] == "committed" then
      committed_count = committed_count + 1
    else
      held_count = held_count + 1
    end
  end
end

if held_count + committed_count == n then
  if committed_count > 0 then
    return {3, 0, 0}
  end
  return {2, 0, 0}
end
if held_count + committed_count > 0 then
  for i = 1, n do
    if redis.call("EXISTS", KEYS[5 * (i - 1) + 4]) == 0 then
      return {-3, i, 0}
    end
  end
end

for i = 1, n do
  local raw = redis.call("GET", KEYS[5 * (i - 1) + 1])
  if not raw then
    return {-1, i, 0}
  end
  local avail = tonumber(raw)
  if avail == nil then
    redis.log(redis.LOG_WARNING, "stockgate reserve: non-numeric " .. KEYS[5 * (i - 1) + 1])
    return {-2, i, 0}
  end
  if avail < qty[i] then
    if avail < 0 then
      redis.log(redis.LOG_WARNING, "stockgate reserve: negative " .. KEYS[5 * (i - 1) + 1])
      avail = 0
    end
    return {0, i, avail}
  end
end

for i = 1, n do
  local base = 5 * (i - 1)
  redis.call("DECRBY", KEYS[base + 1], qty[i])
  redis.call("INCRBY", KEYS[base + 2], qty[i])
  redis.call("HSET", KEYS[base + 4], "qty", qty[i], "deadline", deadline, "state", "held")
  redis.call("ZADD", KEYS[base + 5], deadline, order)
end
return {1, 0, 0}
