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
-- Bad arguments include keys that are not one SKU's five keys in the order
-- above (with this order's hold key), and one SKU on two lines. A counter
-- that is not an integer (a hand edit) is refused as bad arguments too, and
-- logged, before anything is written.

local MAX_QTY = 10000

local function parse_int(s)
  if type(s) ~= "string" or not string.match(s, "^%d+$") or #s > 15 then
    return nil
  end
  return tonumber(s)
end

-- A counter as INCRBY and DECRBY read it. tonumber alone would also take
-- "1.5", "1e3" or "0x10", and the DECRBY that then raises would do so after
-- earlier lines were already written.
local function parse_counter(s)
  if not s then
    return 0
  end
  if not string.match(s, "^%-?%d+$") or #s > 16 then
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

-- The SKU prefix ("sg:{SKU}") of line i's keys, or nil when they are not one
-- SKU's keys and this order's hold: mixed keys would move units between two
-- SKUs' counters.
local function line_prefix(base)
  local p = string.match(KEYS[base + 1], "^(.+):avail$")
  if p and KEYS[base + 2] == p .. ":held" and KEYS[base + 3] == p .. ":sold"
    and KEYS[base + 4] == p .. ":hold:" .. order and KEYS[base + 5] == p .. ":deadlines" then
    return p
  end
  return nil
end

-- Every read and check happens before the first write: Redis has no rollback.
local qty = {}
local seen = {}
local has_hold = {}
local held_count, committed_count = 0, 0
for i = 1, n do
  local q = parse_int(ARGV[2 + i])
  if q == nil or q < 1 or q > MAX_QTY then
    return {-2, i, 0}
  end
  local base = 5 * (i - 1)
  local prefix = line_prefix(base)
  -- The same SKU twice would pass two separate checks against one counter.
  if prefix == nil or seen[prefix] then
    return {-2, i, 0}
  end
  seen[prefix] = true
  qty[i] = q

  local hold = redis.call("HMGET", KEYS[base + 4], "qty", "state")
  if hold[1] then
    has_hold[i] = true
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
    if not has_hold[i] then
      return {-3, i, 0}
    end
  end
end

-- This loop is the hot path of a flash sale, so it makes as few calls as it
-- safely can: every redis.call costs about as much as a small EVALSHA.
for i = 1, n do
  local base = 5 * (i - 1)
  local c = redis.call("MGET", KEYS[base + 1], KEYS[base + 2])
  if not c[1] then
    return {-1, i, 0}
  end
  -- MGET answers nil for a key of another type instead of raising. Set and
  -- Add always create held, so a nil is rare and is confirmed with a GET,
  -- which raises WRONGTYPE now rather than INCRBY raising after a write.
  local raw_held = c[2] or redis.call("GET", KEYS[base + 2])
  local avail = parse_counter(c[1])
  local held = parse_counter(raw_held)
  if avail == nil or held == nil then
    redis.log(redis.LOG_WARNING, "stockgate reserve: non-integer counter at " .. KEYS[base + 1]
      .. " or " .. KEYS[base + 2])
    return {-2, i, 0}
  end
  if avail < qty[i] then
    if avail < 0 then
      redis.log(redis.LOG_WARNING, "stockgate reserve: negative " .. KEYS[base + 1])
      avail = 0
    end
    return {0, i, avail}
  end
  -- With several lines, a read that raises now, before any write, if a
  -- deadlines key is not a sorted set. A single line needs no extra call:
  -- its ZADD below is the first write, so it can raise with nothing done.
  if n > 1 then
    redis.call("ZSCORE", KEYS[base + 5], order)
  end
end

-- Every key's type and every counter was checked above (HMGET, MGET/GET and
-- ZSCORE or a leading ZADD), so no call below can raise.
for i = 1, n do
  local base = 5 * (i - 1)
  redis.call("ZADD", KEYS[base + 5], deadline, order)
  redis.call("DECRBY", KEYS[base + 1], qty[i])
  redis.call("INCRBY", KEYS[base + 2], qty[i])
  redis.call("HSET", KEYS[base + 4], "qty", qty[i], "deadline", deadline, "state", "held")
end
return {1, 0, 0}
