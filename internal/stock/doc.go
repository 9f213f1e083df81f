// Package stock is the stock gate: the Go API over the Lua scripts in lua/
// and the Redis key schema they share. It owns every stock counter
// (available, held, sold) and every per-order hold.
//
// It must not know about Postgres, Asynq or order payloads beyond the lines
// it is given: the order flow that decides when to reserve, release or commit
// lives in internal/orders.
package stock
