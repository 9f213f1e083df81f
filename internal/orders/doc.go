// Package orders is the order domain: the order:place payload and its
// strict codec and validation, the Postgres store that holds every order's
// one terminal row, the task handler that ties the stock gate to that store
// following the flow in DESIGN.md, the hold sweeper, and the client Go
// storefront backends enqueue with.
//
// The orders row is the arbiter: the first terminal write wins (Store.Decide
// inserts only if absent) and every later step follows the row that stands.
//
// It must not touch Redis keys or Lua directly: stock moves only through
// internal/stock. It must not change the schema: that is the migrations
// package's job, and the task and payload contracts of DESIGN.md change only
// with a migration path.
package orders
