-- Redis runs scripts on Lua 5.1 with these globals; anything else is a bug.
std = "lua51"
read_globals = { "redis", "KEYS", "ARGV", "cjson", "cmsgpack", "bit", "struct" }
max_line_length = 120
