-- ratelimit.lua: count one attempt in a customer's fixed window.
--
-- KEYS:
--   [1] -> sg:rate:{CUSTOMER}  attempts in the current window
-- ARGV:
--   [1] -> limit, attempts allowed per window (>= 1)
--   [2] -> window, milliseconds (>= 1)
-- Returns {allowed, count}: allowed is 1 while count <= limit, else 0.
-- {-2, 0} means bad arguments and nothing changed.

local function parse_int(s)
  if type(s) ~= "string" or not string.match(s, "^%d+$") or #s > 12 then
    return nil
  end
  return tonumber(s)
end

local limit = parse_int(ARGV[1])
local window = parse_int(ARGV[2])
if #KEYS ~= 1 or limit == nil or window == nil or limit < 1 or window < 1 then
  return {-2, 0}
end
local current = redis.call("GET", KEYS[1])
if current and tonumber(current) == nil then
  return {-2, 0}
end

local count = redis.call("INCR", KEYS[1])
-- A key left without a TTL would rate-limit the customer forever.
if count == 1 or redis.call("PTTL", KEYS[1]) < 0 then
  redis.call("PEXPIRE", KEYS[1], window)
end
if count <= limit then
  return {1, count}
end
return {0, count}
