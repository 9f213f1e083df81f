-- lease.lua: take, renew or give up a lease, so that one of several
-- processes does a job that needs doing once (the hold sweeper: one sweeper
-- is enough, and every step it takes is idempotent, so a lease that lapses
-- under a frozen holder costs only work done twice).
--
-- KEYS:
--   [1] -> the lease, a string holding its holder's id (sg:sweeper:lease)
-- ARGV:
--   [1] -> the caller's holder id, 1-64 bytes
--   [2] -> time to live in milliseconds, a decimal integer; 0 gives the
--          lease up
-- Returns 1 when the caller holds the lease afterwards (taken now, or
-- renewed for the time to live), or, with 0, no longer holds it; 0 when
-- another holder has it (nothing changed); -2 for bad arguments (nothing
-- changed).

local id, ttl = ARGV[1], uint(ARGV[2])
if not id or id == "" or #id > 64 or not ttl then
  return -2
end
local cur = redis.call("GET", KEYS[1])
if ttl == 0 then
  if cur == id then
    redis.call("DEL", KEYS[1])
  end
  return 1
end
if cur and cur ~= id then
  return 0
end
redis.call("SET", KEYS[1], id, "PX", ARGV[2])
return 1
