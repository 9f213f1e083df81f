// Package lua embeds stockgate's Redis Lua scripts. The scripts are the only
// code that changes stock counters; internal/stock is their Go API. Keeping
// them as plain .lua files lets luacheck lint them and lets an operator run
// one by hand with redis-cli --eval (see README.md in this folder).
package lua

import _ "embed"

// Reserve takes one order's hold on every line, all or nothing.
//
//go:embed reserve.lua
var Reserve string

// Release gives back exactly what an order's holds recorded, once.
//
//go:embed release.lua
var Release string

// Commit turns an order's holds into sold units, once.
//
//go:embed commit.lua
var Commit string

// Set makes exactly N units of a SKU available.
//
//go:embed set.lua
var Set string

// Add restocks a SKU by N units.
//
//go:embed add.lua
var Add string

// RateLimit counts one attempt in a customer's fixed window.
//
//go:embed ratelimit.lua
var RateLimit string

// Rebuild restores a SKU's counters from Postgres after Redis lost them.
//
//go:embed rebuild.lua
var Rebuild string
