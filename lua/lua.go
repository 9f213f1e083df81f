// Package lua embeds stockgate's Redis Lua scripts. The scripts are the only
// code that changes stock counters; internal/stock is their Go API and the
// place where arguments are checked. Keeping them as plain .lua files lets
// luacheck lint them and lets an operator run one by hand with redis-cli
// --eval (see README.md in this folder).
//
// Each script is prelude.lua, the helpers the scripts share, followed by the
// script's own file, joined here. Redis gets one self-contained script per
// EVALSHA, and `cat lua/prelude.lua lua/reserve.lua` is exactly Reserve.
package lua

import _ "embed"

//go:embed prelude.lua
var prelude string

var (
	//go:embed reserve.lua
	reserve string
	//go:embed release.lua
	release string
	//go:embed commit.lua
	commit string
	//go:embed set.lua
	set string
	//go:embed add.lua
	add string
	//go:embed ratelimit.lua
	rateLimit string
	//go:embed rebuild.lua
	rebuild string
	//go:embed cancel.lua
	cancel string
	//go:embed unindex.lua
	unindex string
	//go:embed lease.lua
	lease string
	//go:embed absorb.lua
	absorb string
)

// The scripts as Redis runs them. A new script is one more .lua file with
// its KEYS, ARGV and replies at the top, and one more line here.
var (
	// Reserve takes one order's hold on every line, all or nothing.
	Reserve = prelude + reserve
	// Release gives back exactly what an order's holds recorded, once.
	Release = prelude + release
	// Commit turns an order's holds into sold units, once.
	Commit = prelude + commit
	// Set makes exactly N units of a SKU available.
	Set = prelude + set
	// Add restocks a SKU by N units.
	Add = prelude + add
	// RateLimit counts one attempt in a customer's fixed window.
	RateLimit = prelude + rateLimit
	// Rebuild restores a SKU's counters from Postgres after Redis lost them.
	Rebuild = prelude + rebuild
	// Cancel gives a confirmed order's units back to available, once: a
	// cancellation after the sale.
	Cancel = prelude + cancel
	// Unindex drops a SKU from the hold index if no reserve marked it since.
	Unindex = prelude + unindex
	// Lease takes, renews or gives up a lease.
	Lease = prelude + lease
	// Absorb sells, on a fenced SKU, the units of confirmed orders whose
	// holds a failover lost.
	Absorb = prelude + absorb
)
