-- Redis runs scripts on Lua 5.1 with these globals; anything else is a bug.
local redis_globals = { "redis", "KEYS", "ARGV", "cjson", "cmsgpack", "bit", "struct" }
std = "lua51"
read_globals = redis_globals
max_line_length = 120

-- lua.go puts lua/prelude.lua in front of every other script there, so the
-- scripts may read the prelude's top-level locals: the lines that start
-- "local NAME" or "local function NAME". They are read from the prelude
-- itself, so adding a helper needs no change here. The prelude itself gets
-- only Redis's globals (a helper used above its definition would be nil at
-- run time), and only its top-level locals are let off looking unused.
local prelude = {}
local f = io.open("lua/prelude.lua") or io.open("prelude.lua")
assert(f, "lua/prelude.lua not found: run luacheck from the repository root or lua/")
for line in f:lines() do
  local name = line:match("^local function ([%a_][%w_]*)") or line:match("^local ([%a_][%w_]*)")
  if name then
    prelude[#prelude + 1] = name
  end
end
f:close()

local unused = {}
for i, name in ipairs(prelude) do
  unused[i] = "211/^" .. name .. "$"
end
files["lua/*.lua"] = { read_globals = prelude }
files["lua/prelude.lua"] = { new_read_globals = redis_globals, ignore = unused }
